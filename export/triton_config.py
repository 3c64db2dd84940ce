"""Triton ``config.pbtxt`` for the network models and the parameters of their pre/post models.

The configs are built as Triton ``ModelConfig`` protobuf messages and rendered in text
format, so every generated file parses as a ``ModelConfig`` by construction. Tensor names
and shapes are the contract with ``model_repository/`` (see ``shared/ARCHITECTURE.md``):

- ``cxr_net``: ``IMAGE`` FP32 [1, S, S] → ``LOGITS`` FP32 [L], ``CAMS`` FP32 [L, h, w]
- ``brats_net``: ``PATCH`` FP32 [4, R, R, R] → ``LOGITS`` FP32 [3, R, R, R]
- ``ct_head_net``: ``SLICES`` FP32 [C, S, S] (one windowed slice, C = (2k + 1) * 3) →
  ``LOGITS`` FP32 [6], ``CAMS`` FP32 [6, h, w]

with a leading dynamic batch dimension (``max_batch_size`` > 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

ModelKind = Literal["cxr", "brats", "ct_head"]
ExportFormat = Literal["onnx", "tensorrt", "python-onnx"]

NETWORK_MODEL_NAMES: dict[str, str] = {
    "cxr": "cxr_net",
    "brats": "brats_net",
    "ct_head": "ct_head_net",
}
BRATS_OVERLAP = 0.5
DEFAULT_MAX_QUEUE_DELAY_US = 1000
CXR_NORMALISATION = (
    "[0,1] MONOCHROME2 image, resized with padding to input_size x input_size, "
    "then (x - mean) / std"
)
CT_HEAD_NORMALISATION = (
    "HU slice resized with air padding to input_size x input_size, then each window "
    "(name:centre:width) mapped linearly to [0,1] and clipped; context_slices neighbours "
    "each side stacked as channels (lowest slice first)"
)


@dataclass(frozen=True)
class TensorSpec:
    """One network input or output: name and dimensions without the batch axis (FP32)."""

    name: str
    dims: tuple[int, ...]


def cxr_cam_size(meta: Mapping[str, Any], kind: ModelKind = "cxr") -> tuple[int, int]:
    """Feature map (CAM) height and width of a CXR or CT head network for its input size.

    Uses ``meta["cam_size"]`` when present (export records the traced size there), else
    computes it from the preset's number of dense blocks.
    """
    if "cam_size" in meta:
        height, width = (int(v) for v in meta["cam_size"])
        return height, width
    from training.networks.cxr import feature_map_size, preset

    if kind == "ct_head":
        from training.networks.ct_head import build_ct_head_net

        blocks = build_ct_head_net(meta["preset"], int(meta["context"])).num_blocks
    else:
        blocks = len(preset(meta["preset"])["block_config"])
    size = int(meta["input_size"])
    return feature_map_size(size, size, blocks)


def network_io(
    kind: ModelKind, meta: Mapping[str, Any]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The network model's inputs and outputs (names and per-item dims) for ``kind``."""
    if kind == "cxr":
        size = int(meta["input_size"])
        n_labels = len(meta["labels"])
        cam_h, cam_w = cxr_cam_size(meta)
        return (
            [TensorSpec("IMAGE", (1, size, size))],
            [TensorSpec("LOGITS", (n_labels,)), TensorSpec("CAMS", (n_labels, cam_h, cam_w))],
        )
    if kind == "ct_head":
        from medvision_contract.ct_windows import channels_per_slice

        size = int(meta["input_size"])
        n_labels = len(meta["labels"])
        cam_h, cam_w = cxr_cam_size(meta, "ct_head")
        channels = channels_per_slice(int(meta["context"]), len(meta["windows"]))
        return (
            [TensorSpec("SLICES", (channels, size, size))],
            [TensorSpec("LOGITS", (n_labels,)), TensorSpec("CAMS", (n_labels, cam_h, cam_w))],
        )
    if kind == "brats":
        roi = int(meta["roi"])
        n_regions = len(meta["regions"])
        return (
            [TensorSpec("PATCH", (4, roi, roi, roi))],
            [TensorSpec("LOGITS", (n_regions, roi, roi, roi))],
        )
    raise ValueError(f"unknown model kind {kind!r}; expected 'cxr', 'brats' or 'ct_head'")


def _join(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def _windows(meta: Mapping[str, Any]) -> str:
    from medvision_contract.ct_windows import format_windows

    return format_windows(tuple((str(n), float(c), float(w)) for n, c, w in meta["windows"]))


def _thresholds(kind: ModelKind, meta: Mapping[str, Any]) -> list[float]:
    if kind in ("cxr", "ct_head"):
        found = meta.get("thresholds")
        return [float(t) for t in found] if found else [0.5] * len(meta["labels"])
    return [float(meta.get("threshold", 0.5))] * len(meta["regions"])


def network_parameters(
    kind: ModelKind,
    meta: Mapping[str, Any],
    *,
    run_id: str | None,
    model_version_label: str,
    exported_at: datetime | None = None,
) -> dict[str, str]:
    """The ``parameters`` of a network model: what produced a finding, as strings."""
    stamp = (exported_at or datetime.now(UTC)).isoformat(timespec="seconds")
    common = {
        "model_version": model_version_label,
        "training_run_id": run_id or "",
        "synthetic_data": "true" if meta.get("synthetic_data") else "false",
        "exported_at": stamp,
        "preset": str(meta.get("preset", "")),
        "thresholds": _join(_thresholds(kind, meta)),
    }
    if kind == "cxr":
        return {
            "labels": _join(meta["labels"]),
            "input_size": str(int(meta["input_size"])),
            "mean": repr(float(meta["mean"])),
            "std": repr(float(meta["std"])),
            "normalisation": CXR_NORMALISATION,
            "threshold_method": str(meta.get("threshold_method", "default 0.5")),
            **common,
        }
    if kind == "ct_head":
        return {
            "labels": _join(meta["labels"]),
            "input_size": str(int(meta["input_size"])),
            "context_slices": str(int(meta["context"])),
            "windows": _windows(meta),
            "normalisation": CT_HEAD_NORMALISATION,
            "aggregation": "study probability = max over slices",
            "threshold_method": str(meta.get("threshold_method") or "default 0.5"),
            **common,
        }
    return {
        "regions": _join(meta["regions"]),
        "roi": str(int(meta["roi"])),
        "threshold": repr(float(meta.get("threshold", 0.5))),
        "normalisation": str(meta.get("normalisation", "")),
        **common,
    }


def network_config(
    kind: ModelKind,
    meta: Mapping[str, Any],
    *,
    format: ExportFormat,
    version: int,
    max_batch_size: int = 8,
    instance_count: int = 1,
    gpu: bool,
    run_id: str | None,
    model_version_label: str,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
    intra_op_threads: int = 0,
    exported_at: datetime | None = None,
) -> str:
    """``config.pbtxt`` text for the network model ``cxr_net``, ``brats_net`` or ``ct_head_net``.

    ``onnx`` uses the ONNX Runtime backend (on GPU with the TensorRT FP16 accelerator),
    ``tensorrt`` a TensorRT plan (GPU only: ``gpu=False`` raises ``ValueError``) and
    ``python-onnx`` the Python backend running ``model.onnx`` through onnxruntime (the
    only backend of the pip-installed Triton). The version policy serves exactly
    ``version``, so the ``parameters`` always describe the weights being served.
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1 (dynamic batching)")
    if instance_count < 1:
        raise ValueError("instance_count must be at least 1")
    config = pb.ModelConfig(name=NETWORK_MODEL_NAMES[kind], max_batch_size=max_batch_size)
    config.version_policy.specific.versions.append(version)
    inputs, outputs = network_io(kind, meta)
    for spec in inputs:
        config.input.add(name=spec.name, data_type=pb.TYPE_FP32, dims=spec.dims)
    for spec in outputs:
        config.output.add(name=spec.name, data_type=pb.TYPE_FP32, dims=spec.dims)
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    group_kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    if format == "onnx":
        config.platform = "onnxruntime_onnx"
        if gpu:
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
                name="tensorrt"
            )
            accelerator.parameters["precision_mode"] = "FP16"
    elif format == "tensorrt":
        if not gpu:
            raise ValueError("a TensorRT plan runs on a GPU only: use gpu=True")
        config.platform = "tensorrt_plan"
    elif format == "python-onnx":
        config.backend = "python"
    else:
        raise ValueError(f"unknown format {format!r}; expected onnx, tensorrt or python-onnx")
    config.instance_group.add(kind=group_kind, count=instance_count)
    parameters = network_parameters(
        kind, meta, run_id=run_id, model_version_label=model_version_label,
        exported_at=exported_at,
    )  # fmt: skip
    if format == "python-onnx":
        parameters["intra_op_num_threads"] = str(intra_op_threads)
        parameters["providers"] = (
            "CUDAExecutionProvider,CPUExecutionProvider" if gpu else "CPUExecutionProvider"
        )
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    header = f"# Generated by `medvision export {kind}` ({format}); do not edit by hand.\n"
    body: str = text_format.MessageToString(config, as_utf8=True)
    return header + body


def parse_config(text: str) -> pb.ModelConfig:
    """A ``config.pbtxt`` text parsed as Triton's ``ModelConfig`` (raises on bad text)."""
    config = pb.ModelConfig()
    text_format.Parse(text, config)
    return config


def config_parameters(config: pb.ModelConfig) -> dict[str, str]:
    """The ``parameters`` map of a parsed ``ModelConfig`` as plain strings."""
    return {key: value.string_value for key, value in config.parameters.items()}


def pre_post_parameters(
    kind: ModelKind, meta: Mapping[str, Any], *, sw_batch_size: int
) -> dict[str, dict[str, str]]:
    """Parameters the pre/post-processing models need, keyed by model name."""
    if kind == "cxr":
        size = str(int(meta["input_size"]))
        return {
            "cxr_preprocess": {
                "input_size": size,
                "mean": repr(float(meta["mean"])),
                "std": repr(float(meta["std"])),
            },
            "cxr_postprocess": {
                "labels": _join(meta["labels"]),
                "thresholds": _join(_thresholds(kind, meta)),
                "input_size": size,
            },
        }
    if kind == "ct_head":
        size = str(int(meta["input_size"]))
        return {
            "ct_head_preprocess": {
                "input_size": size,
                "context_slices": str(int(meta["context"])),
                "windows": _windows(meta),
            },
            "ct_head_classify": {"batch_size": str(sw_batch_size)},
            "ct_head_postprocess": {
                "labels": _join(meta["labels"]),
                "thresholds": _join(_thresholds(kind, meta)),
                "input_size": size,
            },
        }
    return {
        "brats_segment": {
            "roi": str(int(meta["roi"])),
            "overlap": str(BRATS_OVERLAP),
            "sw_batch_size": str(sw_batch_size),
        },
        "brats_postprocess": {"threshold": repr(float(meta.get("threshold", 0.5)))},
    }


def update_config_parameters(config_path: Path, parameters: Mapping[str, str]) -> None:
    """Set ``parameters`` (other entries kept) in an existing ``config.pbtxt``, atomically.

    The file is parsed as a ``ModelConfig`` and written back in canonical text format;
    the comment lines at its top are kept, other comments are not.
    """
    text = config_path.read_text()
    config = parse_config(text)
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    lines = text.splitlines(keepends=True)
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    body: str = text_format.MessageToString(config, as_utf8=True)
    tmp.write_text(header + body)
    tmp.replace(config_path)
