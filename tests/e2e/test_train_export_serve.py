"""From ``medvision train`` to answers from the real Triton server, through ``medvision export``,
and the control plane reading what Triton serves."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pydicom
import pytest
import torch
from litestar.testing import AsyncTestClient
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from typer.testing import CliRunner

from control.app import create_app
from control.cli.main import app as cli
from control.triton.client import TritonClient
from control.triton.server import (
    TritonServer,
    TritonStartError,
    find_triton_install,
    free_triton_ports,
)
from tests.model_repository.helpers import REPOSITORY, load_model_module
from training.tasks.cxr import load_model


def _triton_missing() -> bool:
    try:
        find_triton_install()
    except TritonStartError:
        return True
    return False


pytestmark = pytest.mark.skipif(
    _triton_missing(), reason="needs the tritonserver binary (nvidia-pytriton wheel)"
)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Train tiny CXR, BraTS and CT head models on synthetic data, export them, serve them."""
    root = tmp_path_factory.mktemp("e2e")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MEDVISION_DATA_DIR", str(root / "var"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repository = root / "model_repository"
    shutil.copytree(
        REPOSITORY, repository, ignore=shutil.ignore_patterns("cxr_net", "brats_net", "ct_head_net")
    )
    invoke("data", "synth", "cxr", "--out", str(root / "cxr"), "--n", "80", "--size", "64")
    invoke(
        "train", "cxr", "--data", str(root / "cxr"), "--preset", "tiny", "--size", "64",
        "--epochs", "1", "--batch-size", "16", "--out", str(root / "cxr-run"),
    )  # fmt: skip
    invoke("data", "synth", "brats", "--out", str(root / "brats"), "--n", "8", "--shape", "24")
    invoke(
        "train", "brats", "--data", str(root / "brats"), "--preset", "tiny", "--roi", "16",
        "--epochs", "1", "--batch-size", "2", "--out", str(root / "brats-run"),
    )  # fmt: skip
    invoke("data", "synth", "ct", "--out", str(root / "ct"), "--n", "8", "--slices", "6-8")
    invoke(
        "train", "ct_head", "--data", str(root / "ct"), "--preset", "tiny", "--size", "32",
        "--epochs", "1", "--batch-size", "16", "--out", str(root / "ct_head-run"),
    )  # fmt: skip
    for kind in ("cxr", "brats", "ct_head"):
        invoke(
            "export", kind, "--checkpoint", str(root / f"{kind}-run" / "best.pt"),
            "--repository", str(repository), "--format", "python-onnx",
        )  # fmt: skip
    server = TritonServer(repository, **free_triton_ports())
    with server:
        yield root, server
    monkeypatch.undo()
    mlflow.set_tracking_uri(None)


def _ct_small_pixels() -> np.ndarray:
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    values = apply_modality_lut(dataset.pixel_array, dataset)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


async def test_cxr_from_a_trained_checkpoint_matches_pytorch(served):
    root, server = served
    pixels = _ct_small_pixels()
    async with TritonClient(server.url_grpc) as client:
        result = await client.infer(
            "cxr",
            {"PIXELS": pixels, "INVERT": np.array([False])},
            ["PROBABILITIES", "POSITIVE", "CAM"],
        )
        parameters = await client.model_parameters("cxr_net")
    model, meta = load_model(root / "cxr-run" / "best.pt")
    preprocess = load_model_module("cxr_preprocess", "cxr_pixels")
    image, _geometry = preprocess.preprocess_pixels(
        pixels, invert=False, size=meta["input_size"], mean=meta["mean"], std=meta["std"]
    )
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(image)))[0].numpy()
    np.testing.assert_allclose(result["PROBABILITIES"], expected, atol=1e-4)
    thresholds = np.array([float(t) for t in parameters["thresholds"].split(",")])
    np.testing.assert_array_equal(result["POSITIVE"], expected >= thresholds)
    assert pixels.shape == (128, 128)
    assert result["CAM"].shape == (14, 256, 256)  # longer side cam_max_side (default 256)
    assert result["CAM"].dtype == np.uint8
    assert parameters["synthetic_data"] == "true"


async def test_ct_head_from_a_trained_checkpoint_names_its_training_run(served):
    """A locally exported checkpoint's config names the MLflow run it was trained in."""
    root, server = served
    volume = np.full((7, 40, 48), -1000, dtype=np.int16)
    volume[:, 5:35, 6:42] = 35
    async with TritonClient(server.url_grpc) as client:
        result = await client.infer(
            "ct_head",
            {"VOLUME": volume, "SPACING_MM": np.array([5.0, 0.5, 0.5], dtype=np.float32)},
            ["SLICE_PROBABILITIES", "PROBABILITIES", "POSITIVE", "HEATMAP"],
        )
        parameters = await client.model_parameters("ct_head_net")
    assert result["SLICE_PROBABILITIES"].shape == (7, 6)
    np.testing.assert_allclose(result["PROBABILITIES"], result["SLICE_PROBABILITIES"].max(0))
    assert result["HEATMAP"].shape == (7, 213, 256) and result["HEATMAP"].dtype == np.uint8
    meta = torch.load(root / "ct_head-run" / "best.pt", weights_only=True)["meta"]
    assert parameters["training_run_id"] == meta["training_run_id"] != ""
    assert mlflow.get_run(meta["training_run_id"]).info.run_name.startswith("ct_head-")


async def test_brats_from_a_trained_checkpoint(served):
    _root, server = served
    rng = np.random.default_rng(0)
    volume = np.zeros((4, 20, 20, 20), dtype=np.float32)
    volume[:, 4:16, 4:16, 4:16] = rng.normal(100, 20, (4, 12, 12, 12))
    async with TritonClient(server.url_grpc) as client:
        result = await client.infer(
            "brats",
            {"VOLUME": volume, "SPACING_MM": np.array([1.0, 1.0, 2.0], dtype=np.float32)},
            ["LABELS", "REGION_ML"],
        )
    labels = result["LABELS"]
    assert labels.shape == (20, 20, 20)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    whole_tumour_ml = np.count_nonzero(labels) * 2.0 / 1000
    assert result["REGION_ML"][2] == pytest.approx(whole_tumour_ml, abs=1e-6)


async def test_control_plane_reports_served_models_and_readiness(served, settings):
    _root, server = served
    app = create_app(
        settings.model_copy(update={"triton_url": server.url_grpc, "triton_required": True})
    )
    async with AsyncTestClient(app=app) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["triton"]["ok"] is True
        from tests.conftest import make_account

        mlops = await make_account(app, client, "mlops9", "mlops")
        models = await client.get("/api/models", headers=mlops.headers)
    assert models.status_code == 200, models.text
    by_name = {m["name"]: m for m in models.json()}
    assert by_name["cxr_net"]["ready"] and by_name["brats_net"]["ready"]
    assert by_name["cxr_net"]["synthetic"] is True
    assert "not a clinical model" in by_name["cxr_net"]["warning"]
    assert by_name["cxr_net"]["model_version"].startswith("cxr-1")
