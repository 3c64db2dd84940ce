"""Parity between a PyTorch network and its ONNX export, run through onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from export.onnx_export import export_module
from export.specs import ModelKind
from export.triton_config import network_io

if TYPE_CHECKING:
    from torch import nn


class ParityError(RuntimeError):
    """The ONNX graph's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute difference per output over every input checked."""

    max_abs_diff: dict[str, float]
    ok: bool
    atol: float
    n_inputs: int

    def summary(self) -> str:
        """One line, e.g. ``LOGITS 3.1e-06, CAMS 4.8e-06 (atol 1e-04, 3 inputs)``."""
        diffs = ", ".join(f"{name} {value:.1e}" for name, value in self.max_abs_diff.items())
        return f"{diffs} (atol {self.atol:.0e}, {self.n_inputs} inputs)"


def cxr_input_from_dicom(path: Path, meta: Mapping[str, Any]) -> npt.NDArray[Any]:
    """A radiograph DICOM preprocessed the training way: [1, S, S] float32.

    Pixels to [0, 1] MONOCHROME2, resized with padding to ``input_size``, then z-scored
    with the training ``mean`` and ``std`` (as ``cxr_eval_transforms`` does).
    """
    import pydicom

    from medvision_contract import preprocess

    image = preprocess.dicom_to_cxr_input(pydicom.dcmread(path))
    resized, _scale, _pad = preprocess.resize_with_padding(image, int(meta["input_size"]))
    normalised: npt.NDArray[Any] = preprocess.zscore(
        resized, float(meta["mean"]), float(meta["std"])
    )
    return normalised[None]


def _batched(array: npt.NDArray[Any], item_dims: tuple[int, ...]) -> npt.NDArray[Any]:
    array = np.asarray(array, dtype=np.float32)
    if array.shape == item_dims:
        return array[None]
    if array.shape[1:] == item_dims:
        return array
    raise ValueError(f"input of shape {array.shape} does not match {item_dims} (or a batch)")


def check_parity(
    model: nn.Module,
    kind: ModelKind,
    onnx_path: Path,
    meta: Mapping[str, Any],
    *,
    real_inputs: Sequence[npt.NDArray[Any]] | None = None,
    atol: float = 1e-4,
    n_random: int = 2,
    seed: int = 0,
) -> ParityReport:
    """Compare PyTorch and onnxruntime outputs on random and (when given) real inputs.

    Random inputs are standard-normal batches of 1 and 2 items (normalised images are
    roughly that); ``real_inputs`` are per-item arrays (or batches) of the network's input
    shape, e.g. :func:`cxr_input_from_dicom`. Raises :class:`ParityError` naming the worst
    output and its difference when it exceeds ``atol``; otherwise returns the report.
    """
    import onnxruntime as ort
    import torch

    module = export_module(model, kind).eval()
    inputs, outputs = network_io(kind, meta)
    item_dims = inputs[0].dims
    rng = np.random.default_rng(seed)
    batches = [
        rng.standard_normal((1 + i % 2, *item_dims)).astype(np.float32) for i in range(n_random)
    ]
    batches += [_batched(array, item_dims) for array in real_inputs or ()]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    names = [spec.name for spec in outputs]
    worst = dict.fromkeys(names, 0.0)
    for batch in batches:
        with torch.no_grad():
            result = module(torch.from_numpy(batch))
        expected = result if isinstance(result, tuple | list) else (result,)
        got = session.run(names, {inputs[0].name: batch})
        for name, want, have in zip(names, expected, got, strict=True):
            diff = float(np.max(np.abs(want.detach().cpu().numpy() - np.asarray(have))))
            worst[name] = max(worst[name], diff)
    name, diff = max(worst.items(), key=lambda item: item[1])
    if not diff <= atol:
        raise ParityError(
            f"ONNX output {name} differs from PyTorch by {diff:.3g} (max abs), above atol {atol:g}"
        )
    return ParityReport(max_abs_diff=worst, ok=True, atol=atol, n_inputs=len(batches))
