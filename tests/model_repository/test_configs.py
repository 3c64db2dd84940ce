"""Every committed config.pbtxt parses as Triton's ModelConfig and keeps the contracts."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tests.model_repository.helpers import REPOSITORY

CONFIGS = sorted(REPOSITORY.glob("*/config.pbtxt"))
COMMITTED = {
    "cxr",
    "cxr_preprocess",
    "cxr_postprocess",
    "brats",
    "brats_preprocess",
    "brats_segment",
    "brats_postprocess",
}
TYPE = pb.DataType


def _parse(name: str) -> pb.ModelConfig:
    return text_format.Parse((REPOSITORY / name / "config.pbtxt").read_text(), pb.ModelConfig())


def _io(tensors: list[pb.ModelInput] | list[pb.ModelOutput]) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in tensors}


def test_all_committed_models_have_configs() -> None:
    assert {path.parent.name for path in CONFIGS} >= COMMITTED


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_parses_and_names_its_folder(path) -> None:
    config = text_format.Parse(path.read_text(), pb.ModelConfig())
    assert config.name == path.parent.name
    assert (path.parent / "1").is_dir(), "Triton needs a version folder, ensembles included"
    if config.platform == "ensemble":
        return
    assert config.backend == "python"
    assert (path.parent / "1" / "model.py").is_file()


def test_cxr_ensemble_contract() -> None:
    config = _parse("cxr")
    assert config.platform == "ensemble" and config.max_batch_size == 0
    assert _io(config.input) == {
        "PIXELS": (TYPE.TYPE_UINT16, [-1, -1]),
        "INVERT": (TYPE.TYPE_BOOL, [1]),
    }
    assert _io(config.output) == {
        "PROBABILITIES": (TYPE.TYPE_FP32, [14]),
        "POSITIVE": (TYPE.TYPE_BOOL, [14]),
        "CAM": (TYPE.TYPE_UINT8, [14, -1, -1]),
    }
    steps = [step.model_name for step in config.ensemble_scheduling.step]
    assert steps == ["cxr_preprocess", "cxr_net", "cxr_postprocess"]


def test_brats_ensemble_contract() -> None:
    config = _parse("brats")
    assert config.platform == "ensemble" and config.max_batch_size == 0
    assert _io(config.input) == {
        "VOLUME": (TYPE.TYPE_FP32, [4, -1, -1, -1]),
        "SPACING_MM": (TYPE.TYPE_FP32, [3]),
    }
    assert _io(config.output) == {
        "LABELS": (TYPE.TYPE_UINT8, [-1, -1, -1]),
        "REGION_ML": (TYPE.TYPE_FP32, [3]),
    }
    steps = [step.model_name for step in config.ensemble_scheduling.step]
    assert steps == ["brats_preprocess", "brats_segment", "brats_postprocess"]


@pytest.mark.parametrize("ensemble", ["cxr", "brats"])
def test_ensemble_steps_match_the_step_models(ensemble: str) -> None:
    """Each step maps existing tensor names of a committed step model (networks aside)."""
    for step in _parse(ensemble).ensemble_scheduling.step:
        if step.model_name.endswith("_net"):
            continue
        model = _parse(step.model_name)
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.output_map) == {t.name for t in model.output}


def test_parameters_export_writes_are_present() -> None:
    """The parameters `medvision export` rewrites exist in the committed configs."""
    expected = {
        "cxr_preprocess": {"input_size", "mean", "std"},
        "cxr_postprocess": {"labels", "thresholds", "input_size"},
        "brats_segment": {"roi", "overlap", "sw_batch_size"},
        "brats_postprocess": {"threshold"},
    }
    for name, keys in expected.items():
        assert keys <= set(_parse(name).parameters), name
