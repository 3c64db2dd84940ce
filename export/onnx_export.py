"""Checkpoint → network → ONNX graph (and, on a CUDA GPU, an FP16 TensorRT plan).

Torch is imported inside the functions so that importing :mod:`export` stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.specs import ModelKind, export_spec
from export.triton_config import network_io

if TYPE_CHECKING:
    from torch import nn


def load_network(kind: ModelKind, checkpoint: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a MedVision checkpoint (eval mode, CPU) and its metadata,
    validated (``training.engine.meta``) and returned in its plain form.

    Raises ``ValueError`` when the checkpoint was trained for another task or its metadata
    lacks a field or has one of the wrong type.
    """
    from training.engine.checkpoint import load_checkpoint
    from training.engine.meta import checkpoint_meta

    spec = export_spec(kind)
    state = load_checkpoint(checkpoint)
    try:
        typed = checkpoint_meta(kind, state["meta"])
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from error
    model = spec.build_network(typed)
    model.load_state_dict(state["model"])
    return model.eval(), typed.to_dict()


def export_module(model: nn.Module, kind: ModelKind) -> nn.Module:
    """The module whose outputs are the ONNX outputs: the network itself, or ``CamWrapper``
    around it when its spec has CAMs (logits and CAMs from one graph)."""
    if not export_spec(kind).cams:
        return model
    from training.networks.cxr import CamWrapper, CxrNet

    if isinstance(model, CamWrapper):
        return model
    if not isinstance(model, CxrNet):
        raise TypeError(f"a {kind} export needs a CxrNet, got {type(model).__name__}")
    return CamWrapper(model)


def export_onnx(
    model: nn.Module, kind: ModelKind, meta: Mapping[str, Any], path: Path, *, opset: int = 17
) -> Path:
    """Write ``model`` as an ONNX graph at ``path`` and return ``path``.

    Tensor names follow the Triton contract of ``kind``'s export spec (e.g. ``IMAGE`` →
    ``LOGITS``, ``CAMS`` for CXR, where logits and CAMs come from one graph). Only the batch
    axis is dynamic; the spatial size is the trained ``input_size`` / ``roi`` (Triton
    preprocessing resizes). The graph is checked with ``onnx.checker`` after writing.
    """
    import onnx
    import torch

    module = export_module(model, kind).eval()
    inputs, outputs = network_io(kind, meta)
    example = torch.randn(2, *inputs[0].dims)
    names = [spec.name for spec in (*inputs, *outputs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI's instance norm always normalises with the input's own statistics, so the
        # exporter's "train=True" note for it does not change the result.
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        # The TorchScript exporter is the one chosen here (the dynamo one needs onnxscript);
        # its deprecation notes and tracer notes about shape checks are expected.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            dynamic_axes={name: {0: "batch"} for name in names},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def onnx_output_dims(path: Path) -> dict[str, tuple[int, ...]]:
    """Per-item output dims (batch axis dropped) of an ONNX graph, by output name."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found: dict[str, tuple[int, ...]] = {}
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim[1:]
        found[output.name] = tuple(int(d.dim_value) for d in dims)
    return found


def tensorrt_available() -> str | None:
    """``None`` when a TensorRT plan can be built here, else the reason it cannot."""
    import importlib.util

    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the tensorrt package is not installed")
    import torch

    if not torch.cuda.is_available():
        missing.append("no CUDA GPU is visible")
    return "; ".join(missing) or None


def build_tensorrt_plan(
    onnx_path: Path,
    plan_path: Path,
    kind: ModelKind,
    meta: Mapping[str, Any],
    *,
    max_batch_size: int,
    workspace_bytes: int = 4 << 30,
) -> Path:
    """Build an FP16 TensorRT engine from ``onnx_path`` into ``plan_path``.

    One optimisation profile covers batch sizes 1 to ``max_batch_size`` (optimised for the
    largest, which Triton's dynamic batcher aims for). Needs a CUDA GPU and ``tensorrt``;
    the plan only runs on the GPU model and TensorRT version that built it.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit_batch = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    flags = 0 if explicit_batch is None else 1 << int(explicit_batch)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    inputs, _ = network_io(kind, meta)
    for spec in inputs:
        profile.set_shape(
            spec.name, (1, *spec.dims), (max_batch_size, *spec.dims), (max_batch_size, *spec.dims)
        )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return plan_path
