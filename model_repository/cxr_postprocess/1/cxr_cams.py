"""Network outputs to findings: probabilities, positives and CAMs on the original image grid.

numpy only; used by the ``cxr_postprocess`` Triton model and by its tests.

CAM path, the same as training evaluation up to the model input: the [L, h, w] maps are
upsampled to the model input size S with bicubic interpolation exactly as torch
``F.interpolate(mode="bicubic", align_corners=False)`` does (Keys kernel with a = -0.75,
half-pixel centres, edge samples repeated), the padding is cropped and the rest resized
to the original height x width (``training.data.preprocess.undo_resize_with_padding``).
Each label's map is then min-max scaled on its own to 0..255 (rounded); a constant map
(range within float rounding of its magnitude) becomes all zeros. So CAM values show where
a label's evidence is strongest within the image, not how strong it is: compare labels
with ``PROBABILITIES``.
"""

from __future__ import annotations

import math

import numpy as np

from training.data.preprocess import undo_resize_with_padding

CUBIC_A = -0.75
FLAT_TOLERANCE = 1e-5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function, float32, without overflow for large magnitudes."""
    values = np.asarray(logits, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights [n, 4] for taps at offsets -1, 0, 1, 2 of fraction t."""
    a = CUBIC_A

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The [out_size, in_size] matrix of torch's 1-D bicubic resize (align_corners=False).

    Source coordinate of output i is ``(i + 0.5) * in_size / out_size - 0.5``; taps outside
    the input repeat the edge sample.
    """
    source = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(source)
    weights = _cubic_weights(source - base)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    for tap in range(4):
        columns = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
        np.add.at(matrix, (rows, columns), weights[:, tap])
    return matrix


def upsample_bicubic(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of [..., h, w] maps to [..., size[0], size[1]], float32 (torch's)."""
    rows = bicubic_matrix(maps.shape[-2], size[0])
    columns = bicubic_matrix(maps.shape[-1], size[1])
    resized = rows @ np.asarray(maps, dtype=np.float64) @ columns.T
    return resized.astype(np.float32)


def scale_to_uint8(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each [H, W] map of [L, H, W] to 0..255 uint8; constant maps give 0.

    A map counts as constant when its range is at most ``FLAT_TOLERANCE`` times its largest
    magnitude (at least 1): resampling a constant map leaves float rounding noise that
    min-max scaling would otherwise blow up to the full 0..255 range.
    """
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    high = flat.max(axis=1, keepdims=True)
    span = high - low
    varies = span > FLAT_TOLERANCE * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    unit = np.divide(flat - low, span, out=np.zeros_like(flat), where=varies)
    return np.rint(unit * 255.0).astype(np.uint8).reshape(maps.shape)


def geometry_fields(
    geometry: np.ndarray, size: int
) -> tuple[tuple[int, int], float, tuple[int, int]]:
    """Original shape, scale and padding from a ``cxr_preprocess`` GEOMETRY [5] vector.

    The scale is recomputed in double precision as ``size / max(height, width)`` (what
    ``resize_with_padding`` used), so crop sizes round exactly as in preprocessing.
    Raises ``ValueError`` when the vector is not a geometry for ``size``.
    """
    values = np.asarray(geometry, dtype=np.float64).reshape(-1)
    if values.size != 5 or not np.all(np.isfinite(values)):
        raise ValueError(f"GEOMETRY must hold 5 finite values, got {values.tolist()}")
    height, width, _, pad_y, pad_x = values
    if min(height, width) < 1 or not all(
        float(v).is_integer() for v in (height, width, pad_y, pad_x)
    ):
        raise ValueError(f"GEOMETRY {values.tolist()} is not an image size with integer padding")
    if not (0 <= pad_y < size and 0 <= pad_x < size):
        raise ValueError(f"GEOMETRY padding {pad_y, pad_x} does not fit the input size {size}")
    shape = (int(height), int(width))
    return shape, size / max(shape), (int(pad_y), int(pad_x))


def cams_to_image(cams: np.ndarray, geometry: np.ndarray, size: int) -> np.ndarray:
    """CAMs [L, h, w] at network resolution to uint8 [L, H, W] on the original image grid."""
    shape, scale, pad = geometry_fields(geometry, size)
    upsampled = upsample_bicubic(cams, (size, size))
    restored = np.stack([undo_resize_with_padding(m, shape, scale, pad) for m in upsampled])
    return scale_to_uint8(restored)


def parse_floats(text: str, count: int, name: str) -> np.ndarray:
    """``count`` comma-separated floats (one value is repeated ``count`` times), float32."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if len(values) == 1:
        values *= count
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} needs {count} finite comma-separated values, got {text!r}")
    return np.asarray(values, dtype=np.float32)
