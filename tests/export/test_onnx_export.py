"""ONNX export and parity: tiny networks, random and real (DICOM) inputs, dynamic batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import export_onnx, onnx_output_dims
from export.parity import ParityError, check_parity, cxr_input_from_dicom
from training.labels import BRATS_REGIONS, CXR_LABELS
from training.networks.brats import build_brats_net
from training.networks.cxr import build_cxr_net, feature_map_size

CXR_META: dict[str, Any] = {
    "task": "cxr", "labels": list(CXR_LABELS), "preset": "tiny", "input_size": 64,
    "mean": 0.45, "std": 0.22, "synthetic_data": True,
}  # fmt: skip
BRATS_META: dict[str, Any] = {
    "task": "brats", "regions": list(BRATS_REGIONS), "preset": "tiny", "roi": 16,
    "threshold": 0.5, "normalisation": "brain z-score", "synthetic_data": True,
}  # fmt: skip


@pytest.fixture(scope="module")
def cxr_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_cxr_net("tiny").eval()
    path = export_onnx(model, "cxr", CXR_META, tmp_path_factory.mktemp("cxr") / "model.onnx")
    return model, path


@pytest.fixture(scope="module")
def brats_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_brats_net(preset="tiny").eval()
    path = export_onnx(model, "brats", BRATS_META, tmp_path_factory.mktemp("brats") / "m.onnx")
    return model, path


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_cxr_graph_names_and_shapes(cxr_onnx: tuple[torch.nn.Module, Path]) -> None:
    _, path = cxr_onnx
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["IMAGE"]
    assert [o.name for o in session.get_outputs()] == ["LOGITS", "CAMS"]
    assert session.get_inputs()[0].shape[1:] == [1, 64, 64]
    cam = feature_map_size(64, 64)
    assert onnx_output_dims(path) == {"LOGITS": (14,), "CAMS": (14, *cam)}


def test_cxr_parity_random_and_real_dicom(cxr_onnx: tuple[torch.nn.Module, Path]) -> None:
    from pydicom.data import get_testdata_file

    model, path = cxr_onnx
    real = cxr_input_from_dicom(Path(get_testdata_file("CT_small.dcm")), CXR_META)
    assert real.shape == (1, 64, 64) and real.dtype == np.float32
    assert float(real.std()) > 0.0  # real image content, not a constant
    report = check_parity(model, "cxr", path, CXR_META, real_inputs=[real])
    print(f"cxr parity max abs diff: {report.summary()}")
    assert report.ok and report.n_inputs == 3
    assert set(report.max_abs_diff) == {"LOGITS", "CAMS"}
    assert all(diff < 1e-4 for diff in report.max_abs_diff.values())


def test_cxr_logits_and_cams_match_one_graph(cxr_onnx: tuple[torch.nn.Module, Path]) -> None:
    _, path = cxr_onnx
    x = np.random.default_rng(1).standard_normal((2, 1, 64, 64)).astype(np.float32)
    logits, cams = _session(path).run(["LOGITS", "CAMS"], {"IMAGE": x})
    np.testing.assert_allclose(cams.mean(axis=(2, 3)), logits, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(
    cxr_onnx: tuple[torch.nn.Module, Path], brats_onnx: tuple[torch.nn.Module, Path], batch: int
) -> None:
    rng = np.random.default_rng(batch)
    image = rng.standard_normal((batch, 1, 64, 64)).astype(np.float32)
    logits, cams = _session(cxr_onnx[1]).run(None, {"IMAGE": image})
    assert logits.shape == (batch, 14) and cams.shape[:2] == (batch, 14)
    patch = rng.standard_normal((batch, 4, 16, 16, 16)).astype(np.float32)
    (seg,) = _session(brats_onnx[1]).run(None, {"PATCH": patch})
    assert seg.shape == (batch, 3, 16, 16, 16)
    with torch.no_grad():
        expected = brats_onnx[0](torch.from_numpy(patch)).numpy()
    np.testing.assert_allclose(seg, expected, atol=1e-4)


def test_brats_parity(brats_onnx: tuple[torch.nn.Module, Path]) -> None:
    model, path = brats_onnx
    volume = np.random.default_rng(2).standard_normal((4, 16, 16, 16)).astype(np.float32)
    report = check_parity(model, "brats", path, BRATS_META, real_inputs=[volume])
    print(f"brats parity max abs diff: {report.summary()}")
    assert report.ok and set(report.max_abs_diff) == {"LOGITS"}


def test_parity_error_names_output(cxr_onnx: tuple[torch.nn.Module, Path]) -> None:
    torch.manual_seed(123)
    other = build_cxr_net("tiny").eval()  # different weights than the exported graph
    with pytest.raises(ParityError, match=r"ONNX output (LOGITS|CAMS) differs .* by"):
        check_parity(other, "cxr", cxr_onnx[1], CXR_META)


def test_real_input_of_wrong_shape_is_rejected(cxr_onnx: tuple[torch.nn.Module, Path]) -> None:
    with pytest.raises(ValueError, match="does not match"):
        check_parity(cxr_onnx[0], "cxr", cxr_onnx[1], CXR_META, real_inputs=[np.zeros((32, 32))])
