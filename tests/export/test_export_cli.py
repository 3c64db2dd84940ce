"""``medvision export``: files written, overwrite refusal, TensorRT refusal, registry, runner."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from typer.testing import CliRunner

from export.cli import app
from export.repository import TEMPLATE, ExportError, export_model
from export.triton_config import config_parameters, parse_config, update_config_parameters
from training.engine.checkpoint import save_checkpoint
from training.labels import BRATS_REGIONS, CXR_LABELS
from training.networks.brats import build_brats_net
from training.networks.cxr import build_cxr_net

REPO_ROOT = Path(__file__).resolve().parents[2]
CXR_META: dict[str, Any] = {
    "task": "cxr", "labels": list(CXR_LABELS), "preset": "tiny", "input_size": 64,
    "mean": 0.45, "std": 0.22, "synthetic_data": True,
    "thresholds": [round(0.2 + 0.01 * k, 2) for k in range(14)], "threshold_method": "youden",
}  # fmt: skip
BRATS_META: dict[str, Any] = {
    "task": "brats", "regions": list(BRATS_REGIONS), "preset": "tiny", "roi": 16,
    "threshold": 0.4, "normalisation": "per-channel z-score over brain (non-zero) voxels",
    "synthetic_data": True,
}  # fmt: skip
FAKE_PREPROCESS = """# hand-written header
name: "cxr_preprocess"
backend: "python"
max_batch_size: 0
input [{ name: "PIXELS" data_type: TYPE_UINT16 dims: [-1, -1] }]
output [{ name: "IMAGE" data_type: TYPE_FP32 dims: [1, -1, -1] }]
parameters { key: "input_size" value { string_value: "0" } }
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    cxr, brats = folder / "cxr" / "best.pt", folder / "brats" / "best.pt"
    save_checkpoint(cxr, {"model": build_cxr_net("tiny").state_dict(), "meta": CXR_META})
    save_checkpoint(
        brats, {"model": build_brats_net(preset="tiny").state_dict(), "meta": BRATS_META}
    )
    return {"cxr": cxr, "brats": brats}


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "model_repository"
    (repo / "cxr_preprocess").mkdir(parents=True)
    (repo / "cxr_preprocess" / "config.pbtxt").write_text(FAKE_PREPROCESS)
    return repo


@pytest.fixture
def mlflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDVISION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "data"


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _params(config_path: Path) -> dict[str, str]:
    return config_parameters(parse_config(config_path.read_text()))


def test_cxr_export_writes_model_and_pre_post_parameters(
    checkpoints: dict[str, Path], repository: Path
) -> None:
    result = _invoke("cxr", "--checkpoint", checkpoints["cxr"], "--repository", repository)
    assert result.exit_code == 0, result.output
    model_dir = repository / "cxr_net"
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.onnx", "model.py"]
    assert (model_dir / "1" / "model.py").read_text() == TEMPLATE.read_text()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # staging removed
    config = parse_config((model_dir / "config.pbtxt").read_text())
    assert config.backend == "python" and config.max_batch_size == 8
    params = _params(model_dir / "config.pbtxt")
    assert params["model_version"] == "cxr-1 (tiny)" and params["synthetic_data"] == "true"
    assert "parity: LOGITS" in result.output
    preprocess = repository / "cxr_preprocess" / "config.pbtxt"
    assert preprocess.read_text().startswith("# hand-written header\n")
    assert _params(preprocess) == {
        "input_size": "64", "mean": "0.45", "std": "0.22"
    }  # fmt: skip
    assert "cxr_postprocess/config.pbtxt not found" in result.output


def test_second_export_to_same_version_needs_force(
    checkpoints: dict[str, Path], repository: Path
) -> None:
    args = ("brats", "--checkpoint", checkpoints["brats"], "--repository", repository)
    assert _invoke(*args, "--format", "onnx").exit_code == 0
    onnx_file = repository / "brats_net" / "1" / "model.onnx"
    before = onnx_file.stat().st_mtime_ns
    refused = _invoke(*args, "--version", "1")
    assert refused.exit_code == 1
    assert "error:" in refused.output and "already exists" in refused.output
    assert onnx_file.stat().st_mtime_ns == before
    forced = _invoke(*args, "--version", "1", "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in (repository / "brats_net" / "1").iterdir()) == [
        "model.onnx", "model.py"
    ]  # fmt: skip
    assert _invoke(*args).exit_code == 0  # next free version
    assert (repository / "brats_net" / "2" / "model.onnx").is_file()
    assert list(parse_config((repository / "brats_net" / "config.pbtxt").read_text())
                .version_policy.specific.versions) == [2]  # fmt: skip


def test_tensorrt_refused_without_gpu_and_writes_nothing(
    checkpoints: dict[str, Path], repository: Path
) -> None:
    if torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT and a CUDA GPU are present here")
    before = sorted(p.relative_to(repository) for p in repository.rglob("*"))
    result = _invoke(
        "cxr", "--checkpoint", checkpoints["cxr"], "--repository", repository,
        "--format", "tensorrt",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "error: TensorRT export needs a CUDA GPU and the tensorrt package" in result.output
    assert sorted(p.relative_to(repository) for p in repository.rglob("*")) == before


def test_bad_inputs_exit_1(checkpoints: dict[str, Path], repository: Path) -> None:
    wrong_task = _invoke("cxr", "--checkpoint", checkpoints["brats"], "--repository", repository)
    assert wrong_task.exit_code == 1 and "not 'cxr'" in wrong_task.output
    neither = _invoke("cxr", "--repository", repository)
    assert neither.exit_code == 1 and "exactly one of" in neither.output
    bad_format = _invoke("cxr", "--checkpoint", checkpoints["cxr"], "--format", "tflite")
    assert bad_format.exit_code == 1 and "--format must be one of" in bad_format.output
    assert not (repository / "cxr_net").exists()


def test_export_into_empty_repository_warns(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = export_model(
        "brats", checkpoint=checkpoints["brats"], repository=tmp_path / "empty", progress=False
    )
    assert result.version == 1 and result.parity.ok
    assert {p.name for p in result.paths} == {"config.pbtxt", "model.onnx", "model.py"}
    assert len(result.warnings) == 2 and not result.updated_configs


def test_parity_failure_writes_nothing(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="parity check failed: ONNX output LOGITS"):
        export_model(
            "brats", checkpoint=checkpoints["brats"], repository=tmp_path / "repo",
            progress=False, atol=0.0,
        )  # fmt: skip
    assert not (tmp_path / "repo" / "brats_net").exists()


def test_register_and_export_from_registry(
    checkpoints: dict[str, Path],
    repository: Path,
    mlflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from training import tracking

    with tracking.run("medvision-cxr", "train-for-test", {"preset": "tiny"}) as train_run:
        tracking.log_artifacts([checkpoints["cxr"]], "checkpoint")
    tracking.register_checkpoint("cxr-checkpoint", train_run)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, after which tracking.configure
    # would create the export experiment with MLflow's default ./mlruns artifact root.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _invoke(
        "cxr", "--mlflow-model", "models:/cxr-checkpoint/1", "--repository", repository,
        "--register", "cxr-triton",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "registered cxr-triton version 1" in result.output
    params = _params(repository / "cxr_net" / "config.pbtxt")
    assert params["training_run_id"] == train_run
    version = MlflowClient().get_model_version("cxr-triton", "1")
    assert version.source.endswith("/cxr_net")
    artifacts = {f.path for f in MlflowClient().list_artifacts(version.run_id, "cxr_net/1")}
    assert {"cxr_net/1/model.onnx", "cxr_net/1/model.py"} <= artifacts
    assert version.source.startswith((mlflow_home / "mlflow" / "artifacts").as_uri())
    assert (mlflow_home / "mlflow" / "mlflow.db").is_file()
    missing = _invoke("cxr", "--mlflow-model", "models:/nope/1", "--repository", repository)
    assert missing.exit_code == 1 and "error:" in missing.output


def test_committed_pre_post_configs_accept_parameters(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    committed = REPO_ROOT / "model_repository"
    names = ["cxr_preprocess", "cxr_postprocess", "brats_segment", "brats_postprocess"]
    if not all((committed / name / "config.pbtxt").is_file() for name in names):
        pytest.skip("the pre/post-processing models are not committed yet")
    repo = tmp_path / "model_repository"
    for name in names:
        shutil.copytree(committed / name, repo / name)
    assert _params(repo / "cxr_postprocess" / "config.pbtxt")["cam_max_side"] == "256"
    update_config_parameters(repo / "cxr_postprocess" / "config.pbtxt", {"cam_max_side": "192"})
    for kind in ("cxr", "brats"):
        result = export_model(kind, checkpoint=checkpoints[kind], repository=repo, progress=False)  # type: ignore[arg-type]
        assert not result.warnings
    cxr_post = _params(repo / "cxr_postprocess" / "config.pbtxt")
    assert cxr_post["thresholds"].split(",")[0] == "0.2"
    assert cxr_post["cam_max_side"] == "192"  # the deployment's CAM size survives an export
    assert _params(repo / "brats_segment" / "config.pbtxt")["roi"] == "16"
    assert _params(repo / "brats_postprocess" / "config.pbtxt")["threshold"] == "0.4"


# --- the python-onnx runner template, without Triton --------------------------------------


@dataclass
class _Tensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class _Response:
    output_tensors: list[_Tensor]
    error: Any = None


def _stub_pb_utils() -> types.ModuleType:
    stub = types.ModuleType("triton_python_backend_utils")
    stub.Tensor = _Tensor  # type: ignore[attr-defined]
    stub.InferenceResponse = _Response  # type: ignore[attr-defined]
    stub.TritonError = str  # type: ignore[attr-defined]
    stub.get_input_tensor_by_name = lambda request, name: _Tensor(name, request[name])  # type: ignore[attr-defined]
    stub.triton_string_to_numpy = lambda name: {"TYPE_FP32": np.float32}[name]  # type: ignore[attr-defined]
    return stub


def _import_runner(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stub_pb_utils())
    spec = importlib.util.spec_from_file_location("medvision_onnx_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_template_compiles() -> None:
    compile(TEMPLATE.read_text(), str(TEMPLATE), "exec")


def test_run_batched_concatenates_and_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _import_runner(TEMPLATE, monkeypatch)
    calls: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(feeds["X"].shape[0])
        return {"Y": feeds["X"] * 2, "S": feeds["X"].sum(axis=1)}

    requests = [{"X": np.full((n, 3), i, np.float32)} for i, n in enumerate([1, 3, 2])]
    results = runner.run_batched(run, requests)
    assert calls == [6]
    assert [r["Y"].shape[0] for r in results] == [1, 3, 2]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["Y"], requests[i]["X"] * 2)
        np.testing.assert_array_equal(result["S"], np.full(result["S"].shape, 3 * i))
    assert runner.run_batched(run, []) == []
    with pytest.raises(ValueError, match="different inputs"):
        runner.run_batched(run, [{"X": np.zeros((1, 3))}, {"Z": np.zeros((1, 3))}])


def test_exported_python_model_serves_batched_requests(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = export_model("cxr", checkpoint=checkpoints["cxr"], repository=tmp_path, progress=False)
    version_dir = result.model_dir / "1"
    runner = _import_runner(version_dir / "model.py", monkeypatch)
    config = json_format.MessageToDict(
        parse_config((result.model_dir / "config.pbtxt").read_text()),
        preserving_proto_field_name=True,
    )
    model = runner.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_version": "1"})
    rng = np.random.default_rng(0)
    requests = [{"IMAGE": rng.standard_normal((n, 1, 64, 64)).astype(np.float32)} for n in (1, 2)]
    responses = model.execute(requests)
    assert [r.error for r in responses] == [None, None]
    with torch.no_grad():
        net = build_cxr_net("tiny").eval()
        net.load_state_dict(torch.load(checkpoints["cxr"], weights_only=True)["model"])
        for request, response in zip(requests, responses, strict=True):
            outputs = {t.name: t.array for t in response.output_tensors}
            logits, cams = net.forward_with_cam(torch.from_numpy(request["IMAGE"]))
            np.testing.assert_allclose(outputs["LOGITS"], logits.numpy(), atol=1e-4)
            np.testing.assert_allclose(outputs["CAMS"], cams.numpy(), atol=1e-4)
    broken = model.execute([{"IMAGE": np.zeros((1, 1, 32, 32), np.float32)}])
    assert broken[0].error and "IMAGE" in broken[0].error and not broken[0].output_tensors
    model.finalize()


def test_pre_post_configs_are_restored_from_the_exported_networks(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """After a checkout resets the committed pre/post configs, syncing from the exported
    networks' configs gives back exactly what the export wrote (``make run`` does this)."""
    from export.repository import sync_pre_post_configs
    from tests.fixtures.triton_repo import REPOSITORY, copy_repository

    repo = copy_repository(tmp_path / "model_repository")
    for kind in ("cxr", "brats"):
        result = _invoke(kind, "--checkpoint", checkpoints[kind], "--repository", repo)
        assert result.exit_code == 0, result.output
    pre_post = ["cxr_preprocess", "cxr_postprocess", "brats_segment", "brats_postprocess"]
    exported = {name: _params(repo / name / "config.pbtxt") for name in pre_post}
    for name in pre_post:
        shutil.copyfile(REPOSITORY / name / "config.pbtxt", repo / name / "config.pbtxt")
    assert _params(repo / "cxr_preprocess" / "config.pbtxt") != exported["cxr_preprocess"]

    updated = sync_pre_post_configs(repo, "cxr") + sync_pre_post_configs(repo, "brats")

    assert sorted(path.parent.name for path in updated) == sorted(pre_post)
    assert {name: _params(repo / name / "config.pbtxt") for name in pre_post} == exported
