"""Sliding-window inference in numpy, the same windows and blending as MONAI's.

Mirrors ``monai.inferers.sliding_window_inference`` (MONAI 1.4-1.6) with ``mode="gaussian"``,
``sigma_scale=0.125``, constant zero padding and no buffering: a volume smaller than the
window is padded symmetrically, windows start every ``int(roi * (1 - overlap))`` voxels
(the last one flush with the far edge), each window's output is weighted by a separable
Gaussian (sigma = 0.125 * roi, peak 1, floored at max(min, 1e-3)), summed, divided by the
summed weights and cropped back. numpy only, so the Triton model and the tests share it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]
SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3


def gaussian_importance_map(roi: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Blending weights over one window, float32 of shape ``roi`` (MONAI's Gaussian map)."""
    weights = np.ones((), dtype=np.float64)
    for size in roi:
        x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        axis = np.exp(x**2 / (-2.0 * (size * sigma_scale) ** 2))
        weights = np.multiply.outer(weights, axis)
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis of ``size`` (>= ``roi``) voxels."""
    interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    count = next(d for d in range(math.ceil(size / interval)) if d * interval + roi >= size) + 1
    return [min(d * interval, size - roi) for d in range(count)]


def sliding_window_inference(
    volume: np.ndarray,
    roi: Sequence[int],
    overlap: float,
    sw_batch_size: int,
    predictor: Predictor,
) -> np.ndarray:
    """Blended predictions [K, *spatial] float32 for one volume [C, *spatial].

    ``predictor`` maps a batch of windows [n, C, *roi] (n <= ``sw_batch_size``) to
    outputs [n, K, *roi]. Raises ``ValueError`` for mismatched dimensions or settings.
    """
    spatial = volume.shape[1:]
    roi = tuple(int(r) for r in roi)
    if len(roi) != len(spatial) or min(roi) < 1:
        raise ValueError(f"roi {roi} does not fit a volume of shape {volume.shape}")
    if not 0 <= overlap < 1 or sw_batch_size < 1:
        raise ValueError(
            f"need 0 <= overlap < 1 and sw_batch_size >= 1, got {overlap}, {sw_batch_size}"
        )
    before = [max(r - s, 0) // 2 for r, s in zip(roi, spatial, strict=True)]
    after = [max(r - s, 0) - b for r, s, b in zip(roi, spatial, before, strict=True)]
    padded = np.pad(
        np.asarray(volume, dtype=np.float32), [(0, 0), *zip(before, after, strict=True)]
    )
    size = padded.shape[1:]
    corners = list(
        itertools.product(*(window_starts(s, r, overlap) for s, r in zip(size, roi, strict=True)))
    )
    weights = gaussian_importance_map(roi)
    output: np.ndarray | None = None
    count = np.zeros(size, dtype=np.float32)
    for first in range(0, len(corners), sw_batch_size):
        group = corners[first : first + sw_batch_size]
        windows = [
            tuple(slice(c, c + r) for c, r in zip(corner, roi, strict=True)) for corner in group
        ]
        batch = np.stack([padded[(slice(None), *window)] for window in windows])
        predictions = np.asarray(predictor(batch), dtype=np.float32)
        if (
            predictions.ndim != batch.ndim
            or predictions.shape[0] != len(group)
            or predictions.shape[2:] != roi
        ):
            raise ValueError(
                f"the predictor returned shape {predictions.shape} "
                f"for windows of shape {batch.shape}"
            )
        if output is None:
            output = np.zeros((predictions.shape[1], *size), dtype=np.float32)
        for window, prediction in zip(windows, predictions, strict=True):
            output[(slice(None), *window)] += prediction * weights
    for corner in corners:
        count[tuple(slice(c, c + r) for c, r in zip(corner, roi, strict=True))] += weights
    assert output is not None
    output /= count
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial, strict=True))
    return output[(slice(None), *crop)]
