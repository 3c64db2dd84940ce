"""Generated Triton configs parse as ModelConfig and carry the contract's names and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from export.triton_config import (
    config_parameters,
    network_config,
    parse_config,
    pre_post_parameters,
    update_config_parameters,
)
from training.labels import BRATS_REGIONS, CXR_LABELS

CXR_META: dict[str, Any] = {
    "task": "cxr", "labels": list(CXR_LABELS), "preset": "densenet121", "input_size": 224,
    "mean": 0.5, "std": 0.25, "synthetic_data": False,
    "thresholds": [0.1 * (k % 9 + 1) for k in range(14)],
    "threshold_method": "youden",
}  # fmt: skip
BRATS_META: dict[str, Any] = {
    "task": "brats", "regions": list(BRATS_REGIONS), "preset": "default", "roi": 96,
    "threshold": 0.5, "normalisation": "per-channel z-score over brain (non-zero) voxels",
    "synthetic_data": True,
}  # fmt: skip
METAS = {"cxr": CXR_META, "brats": BRATS_META}
CASES = [
    (kind, fmt, gpu)
    for kind in ("cxr", "brats")
    for fmt in ("onnx", "tensorrt", "python-onnx")
    for gpu in (True, False)
    if not (fmt == "tensorrt" and not gpu)
]


@pytest.mark.parametrize(("kind", "fmt", "gpu"), CASES)
def test_config_parses_and_carries_parameters(kind: str, fmt: str, gpu: bool) -> None:
    text = network_config(
        kind, METAS[kind], format=fmt, version=3, max_batch_size=8, instance_count=2,  # type: ignore[arg-type]
        gpu=gpu, run_id="abc123", model_version_label=f"{kind}-3 (preset)",
    )  # fmt: skip
    config = text_format.Parse(text, pb.ModelConfig())
    assert config.name == f"{kind}_net"
    assert config.max_batch_size == 8
    assert list(config.version_policy.specific.versions) == [3]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    (group,) = config.instance_group
    assert group.count == 2
    assert group.kind == (pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU)
    params = config_parameters(config)
    assert params["model_version"] == f"{kind}-3 (preset)"
    assert params["training_run_id"] == "abc123"
    assert params["synthetic_data"] == ("true" if METAS[kind]["synthetic_data"] else "false")
    assert params["exported_at"] and params["normalisation"]
    if kind == "cxr":
        assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [
            ("IMAGE", [1, 224, 224], pb.TYPE_FP32)
        ]
        assert [(o.name, list(o.dims)) for o in config.output] == [
            ("LOGITS", [14]), ("CAMS", [14, 7, 7])
        ]  # fmt: skip
        assert params["labels"].split(",") == list(CXR_LABELS)
        assert [float(t) for t in params["thresholds"].split(",")] == CXR_META["thresholds"]
        assert params["input_size"] == "224"
        assert float(params["mean"]) == 0.5 and float(params["std"]) == 0.25
    else:
        assert [(i.name, list(i.dims)) for i in config.input] == [("PATCH", [4, 96, 96, 96])]
        assert [(o.name, list(o.dims)) for o in config.output] == [("LOGITS", [3, 96, 96, 96])]
        assert params["regions"].split(",") == list(BRATS_REGIONS)
        assert params["roi"] == "96" and params["thresholds"] == "0.5,0.5,0.5"
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if fmt == "onnx":
        assert config.platform == "onnxruntime_onnx"
        if gpu:
            assert [a.name for a in accelerators] == ["tensorrt"]
            assert dict(accelerators[0].parameters) == {"precision_mode": "FP16"}
        else:
            assert not accelerators
    elif fmt == "tensorrt":
        assert config.platform == "tensorrt_plan"
    else:
        assert config.backend == "python" and not config.platform
        assert params["intra_op_num_threads"] == "0"
        assert params["providers"].startswith("CUDA" if gpu else "CPU")


def test_tensorrt_without_gpu_is_refused() -> None:
    with pytest.raises(ValueError, match="GPU only"):
        network_config(
            "cxr", CXR_META, format="tensorrt", version=1, gpu=False, run_id=None,
            model_version_label="x",
        )  # fmt: skip


def test_cam_size_of_tiny_preset_at_64() -> None:
    meta = {**CXR_META, "preset": "tiny", "input_size": 64}
    config = parse_config(
        network_config(
            "cxr", meta, format="onnx", version=1, gpu=False, run_id=None, model_version_label="x"
        )
    )
    assert list(config.output[1].dims) == [14, 2, 2]


def test_missing_thresholds_default_to_half() -> None:
    meta = {k: v for k, v in CXR_META.items() if k != "thresholds"}
    params = pre_post_parameters("cxr", meta, sw_batch_size=4)
    assert params["cxr_postprocess"]["thresholds"] == ",".join(["0.5"] * 14)


def test_update_parameters_keeps_other_fields(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text(
        '# hand written\nname: "brats_segment"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "VOLUME" data_type: TYPE_FP32 dims: [4, -1, -1, -1] }]\n'
        'parameters { key: "roi" value { string_value: "0" } }\n'
        'parameters { key: "unrelated" value { string_value: "kept" } }\n'
    )
    wanted = pre_post_parameters("brats", BRATS_META, sw_batch_size=4)["brats_segment"]
    update_config_parameters(path, wanted)
    config = parse_config(path.read_text())
    assert config.name == "brats_segment" and list(config.input[0].dims) == [4, -1, -1, -1]
    assert config_parameters(config) == {
        "roi": "96",
        "overlap": "0.5",
        "sw_batch_size": "4",
        "unrelated": "kept",
    }
