"""Drift references: what a model version's outputs and inputs looked like on validation data.

An export writes ``drift_reference.json`` next to the network's ``config.pbtxt`` (and logs it
to MLflow when a run is active); the control plane compares a sliding window of recent
inferences with it (``control.observability.drift``: PSI and the KS statistic per feature).

A *feature* is one number per inference: an output (``probability:<label>`` for ``cxr``,
``volume_ml:<region>`` for ``brats``) or a simple input statistic (``input:intensity_p01``,
``input:intensity_p50``, ``input:intensity_p99``, ``input:height``, ``input:width``,
``input:depth``, ``input:spacing_mm``). Per feature the reference keeps PSI bin edges (the
validation deciles), the share of validation inferences in each bin, and 101 quantiles
(a sketch of the distribution the KS statistic is computed against).

numpy only: the control plane imports :func:`input_statistics` and :func:`output_features`
so that both sides compute the features the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "medvision-drift-reference/1"
FILENAME = "drift_reference.json"
#: PSI bins: the reference deciles (fewer when values repeat, e.g. many zero volumes).
N_BINS = 10
#: Quantiles kept for the KS statistic (0th to 100th percentile).
N_QUANTILES = 101
#: Percentiles of large images are computed on at most this many values (a strided sample:
#: the 1st/50th/99th percentiles of 2^16 values differ from the full image's by far less
#: than the drift they watch for, and cost ~1 ms instead of ~24 ms for a 1024² film).
MAX_STAT_VALUES = 65_536


def _sample(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    flat = np.asarray(values).reshape(-1)
    step = max(1, flat.size // MAX_STAT_VALUES)
    return flat[::step].astype(np.float64, copy=False)


def input_statistics(
    image: npt.NDArray[Any],
    spacing_mm: Sequence[float] | None = None,
    *,
    channels_first: bool = False,
) -> dict[str, float]:
    """Simple, PHI-free statistics of one model input.

    ``image`` is a radiograph ``[H, W]`` (stored values after the modality LUT) or a volume
    (``[C, X, Y, Z]`` with ``channels_first``, else ``[X, Y, Z]``). Intensity percentiles
    (1st, 50th, 99th) are taken over the non-zero voxels of a volume (the background of a
    skull-stripped MRI is zero) and over all pixels of a radiograph; sizes are the spatial
    dimensions; ``spacing_mm`` (when known) becomes the mean voxel/pixel spacing.
    """
    array = np.asarray(image)
    spatial = array.shape[1:] if channels_first else array.shape
    values = _sample(array)
    if len(spatial) >= 3:
        nonzero = values[values != 0]
        values = nonzero if nonzero.size else values
    values = values[np.isfinite(values)]
    stats: dict[str, float] = {}
    if values.size:
        p01, p50, p99 = np.percentile(values, [1, 50, 99])
        stats.update(
            {"input:intensity_p01": float(p01), "input:intensity_p50": float(p50),
             "input:intensity_p99": float(p99)}
        )  # fmt: skip
    names = ("depth", "height", "width") if len(spatial) >= 3 else ("height", "width")
    for name, size in zip(names, spatial[-len(names) :], strict=True):
        stats[f"input:{name}"] = float(size)
    if spacing_mm is not None and len(spacing_mm):
        stats["input:spacing_mm"] = round(float(np.mean(np.asarray(spacing_mm, float))), 6)
    return stats


def output_features(
    probabilities: Mapping[str, float] | None = None, volumes_ml: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The output features of one inference: per-label probabilities or region volumes."""
    features = {f"probability:{label}": float(p) for label, p in (probabilities or {}).items()}
    features.update({f"volume_ml:{region}": float(v) for region, v in (volumes_ml or {}).items()})
    return features


def feature_reference(values: Sequence[float]) -> dict[str, Any]:
    """PSI bins (edges, proportions), KS quantiles, count and mean of one feature's values."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError("a feature reference needs at least one finite value")
    inner = np.quantile(array, np.linspace(0, 1, N_BINS + 1)[1:-1])
    edges = np.unique(inner)
    counts = np.bincount(np.searchsorted(edges, array, side="left"), minlength=edges.size + 1)
    return {
        "n": int(array.size),
        "mean": float(array.mean()),
        "edges": [float(edge) for edge in edges],
        "proportions": [float(c) / array.size for c in counts],
        "quantiles": [float(q) for q in np.quantile(array, np.linspace(0, 1, N_QUANTILES))],
    }


def build_reference(
    model: str, model_version: str, samples: Sequence[Mapping[str, float]]
) -> dict[str, Any]:
    """The drift reference of ``model`` at ``model_version`` from per-inference feature dicts.

    ``samples`` are one dict per validation inference, e.g.
    ``{**output_features(probabilities=...), **input_statistics(pixels)}``.
    """
    if not samples:
        raise ValueError("a drift reference needs at least one validation inference")
    names = sorted({name for sample in samples for name in sample})
    return {
        "format": FORMAT,
        "model": model,
        "model_version": model_version,
        "n": len(samples),
        "features": {
            name: feature_reference([s[name] for s in samples if name in s]) for name in names
        },
    }


def write_reference(model_dir: Path, reference: Mapping[str, Any]) -> Path:
    """Write ``reference`` to ``<model_dir>/drift_reference.json`` atomically; return the path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / FILENAME
    fd, tmp = tempfile.mkstemp(prefix=".drift-", suffix=".json", dir=model_dir)
    with os.fdopen(fd, "w") as handle:
        json.dump(reference, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def log_reference(path: Path, artifact_path: str) -> bool:
    """Log the reference file to the active MLflow run, if one is active; whether it was."""
    try:
        import mlflow
    except ImportError:
        return False
    if mlflow.active_run() is None:
        return False
    mlflow.log_artifact(str(path), artifact_path=artifact_path)
    return True


def read_reference(path: Path) -> dict[str, Any] | None:
    """A reference file's content, or None when the file is missing or not a reference."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def radiograph_values(dataset: Any) -> npt.NDArray[np.uint16]:
    """A radiograph's first frame after the modality LUT as UINT16, as the control plane
    sends it to Triton (and so as its input statistics are computed at run time)."""
    from pydicom.pixels.processing import apply_modality_lut

    pixels = dataset.pixel_array
    if pixels.ndim == 3:
        pixels = pixels[0]
    values = apply_modality_lut(pixels, dataset)
    clipped: npt.NDArray[np.uint16] = np.clip(np.rint(values), 0, 65535).astype(np.uint16)
    return clipped


def cxr_validation_samples(
    model: Any, meta: Mapping[str, Any], paths: Sequence[Path]
) -> list[dict[str, float]]:
    """Feature dicts of validation radiographs (DICOM files) run through the exported network.

    Probabilities are the sigmoid of the network's logits, as ``cxr_postprocess`` computes
    them; inputs are preprocessed the training way (:func:`export.parity.cxr_input_from_dicom`)
    and their statistics taken on the stored values the control plane would send.
    """
    import pydicom
    import torch

    from export.onnx_export import export_module
    from export.parity import cxr_input_from_dicom

    module = export_module(model, "cxr").eval()
    labels = [str(label) for label in meta["labels"]]
    samples = []
    for path in paths:
        values = radiograph_values(pydicom.dcmread(path))
        with torch.no_grad():
            outputs = module(torch.from_numpy(cxr_input_from_dicom(path, meta)[None]))
        logits = outputs[0] if isinstance(outputs, tuple | list) else outputs
        probabilities = torch.sigmoid(logits[0]).cpu().numpy()
        features = output_features(dict(zip(labels, probabilities.tolist(), strict=True)))
        samples.append({**features, **input_statistics(values)})
    return samples
