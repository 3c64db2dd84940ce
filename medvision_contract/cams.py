"""Network outputs to findings: probabilities, positives and CAMs mapped onto the image.

numpy only; used by the ``cxr_postprocess`` and ``ct_head_postprocess`` Triton models,
training evaluation and their tests.

CAM path, the same as training evaluation up to the model input: the [L, h, w] maps are
upsampled to the model input size S with bicubic interpolation exactly as torch
``F.interpolate(mode="bicubic", align_corners=False)`` does (Keys kernel with a = -0.75,
half-pixel centres, edge samples repeated), the padding is cropped and the rest resized
to the original height x width (``medvision_contract.preprocess.undo_resize_with_padding``;
here as one precomputed matrix per axis, since every step is linear and separable).
Each label's map is then min-max scaled on its own to 0..255 (rounded); a constant map
(range within float rounding of its magnitude) becomes all zeros. So CAM values show where
a label's evidence is strongest within the image, not how strong it is: compare labels
with ``PROBABILITIES``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medvision_contract.preprocess import resize

Array = npt.NDArray[Any]

CUBIC_A = -0.75
FLAT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class PostprocessParameters:
    """What a classifier's post-processing model is configured with: one probability
    threshold per label (float32), the network input size its CAMs were computed for, and
    the longer side of the grid the CAMs are served on."""

    thresholds: Array
    input_size: int
    cam_max_side: int


def sigmoid(logits: Array) -> Array:
    """Logistic function, float32, without overflow for large magnitudes."""
    values = np.asarray(logits, dtype=np.float64)
    probabilities: Array = (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)
    return probabilities


def _cubic_weights(t: Array) -> Array:
    """Keys cubic convolution weights [n, 4] for taps at offsets -1, 0, 1, 2 of fraction t."""
    a = CUBIC_A

    def near(x: Array) -> Array:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Array) -> Array:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def bicubic_matrix(in_size: int, out_size: int) -> Array:
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


def resize_matrix(in_size: int, out_size: int) -> Array:
    """The [out_size, in_size] matrix of ``preprocess.resize`` along one axis.

    That resize (block average, then linear interpolation) is linear and separable, so its
    matrix is its response to unit impulses: ``resize(image) == R_y @ image @ R_x.T``.
    """
    impulses = np.eye(in_size, dtype=np.float32)
    return resize(impulses, (out_size, in_size)).astype(np.float64)


def scale_to_uint8(cam: Array) -> Array:
    """Min-max scale one [H, W] map to 0..255 uint8 (rounded); a constant map gives 0.

    A map counts as constant when its range is at most ``FLAT_TOLERANCE`` times its largest
    magnitude (at least 1): resampling a constant map leaves float rounding noise that
    min-max scaling would otherwise blow up to the full 0..255 range.
    """
    low, high = float(cam.min()), float(cam.max())
    if high - low <= FLAT_TOLERANCE * max(1.0, abs(low), abs(high)):
        return np.zeros(cam.shape, dtype=np.uint8)
    scaled = cam - np.float32(low)
    scaled *= np.float32(255.0 / (high - low))
    rounded: Array = np.rint(scaled, out=scaled).astype(np.uint8)
    return rounded


def geometry_fields(geometry: Array, size: int) -> tuple[tuple[int, int], float, tuple[int, int]]:
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


def longest_side_shape(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``shape`` scaled (aspect ratio kept, rounded, at least 1) so its longer side is
    ``max_side``: the grid of a map the viewer stretches over the image."""
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    scale = max_side / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def cam_matrices(
    cam_shape: tuple[int, int],
    geometry: Array,
    size: int,
    out_shape: tuple[int, int] | None = None,
) -> tuple[Array, Array]:
    """Row and column matrices [H, h] and [W, w] taking a CAM to the original image grid.

    Each is bicubic upsampling to ``size``, the crop of the padding and the resize to the
    original length, composed: ``rows @ cam @ columns.T`` equals ``undo_resize_with_padding``
    of the bicubic-upsampled map, at a fraction of the cost for large images. With
    ``out_shape`` the last resize goes to that shape instead of the original one.
    """
    shape, scale, pad = geometry_fields(geometry, size)
    target = out_shape or shape
    matrices = []
    for axis in range(2):
        kept = max(1, round(shape[axis] * scale))  # as resize_with_padding rounds
        upsample = bicubic_matrix(cam_shape[axis], size)[pad[axis] : pad[axis] + kept]
        matrices.append(resize_matrix(kept, target[axis]) @ upsample)
    return matrices[0], matrices[1]


@functools.lru_cache(maxsize=32)
def _float32_matrices(
    cam_shape: tuple[int, int],
    geometry: tuple[float, ...],
    size: int,
    out_shape: tuple[int, int] | None,
) -> tuple[Array, Array]:
    """``cam_matrices`` in float32 (rows, transposed columns), cached per image geometry:
    a PACS sends many images of the same few sizes."""
    rows, columns = cam_matrices(cam_shape, np.asarray(geometry), size, out_shape)
    return rows.astype(np.float32), np.ascontiguousarray(columns.T, dtype=np.float32)


def cams_to_image(
    cams: Array,
    geometry: Array,
    size: int,
    out_shape: tuple[int, int] | None = None,
) -> Array:
    """CAMs [..., h, w] at network resolution to uint8 [..., H, W] on the original image
    grid (or on ``out_shape``), each map min-max scaled on its own."""
    key = tuple(float(v) for v in np.asarray(geometry, dtype=np.float64).reshape(-1))
    rows, columns_t = _float32_matrices(tuple(cams.shape[-2:]), key, size, out_shape)
    maps = rows @ np.asarray(cams, dtype=np.float32) @ columns_t  # [..., H, W] in one batch
    flat = maps.reshape(-1, *maps.shape[-2:])
    out = np.empty(flat.shape, dtype=np.uint8)
    for index, cam in enumerate(flat):
        out[index] = scale_to_uint8(cam)
    return out.reshape(maps.shape)


def cams_to_display(cams: Array, geometry: Array, size: int, max_side: int) -> Array:
    """CAMs [..., h, w] to uint8 [..., H', W'] covering the original image on a grid of its
    aspect ratio whose longer side is ``max_side`` (``longest_side_shape``): what a viewer
    stretches over the image, at a fraction of the full image's bytes."""
    shape, _scale, _pad = geometry_fields(geometry, size)
    return cams_to_image(cams, geometry, size, longest_side_shape(shape, max_side))


def parse_floats(text: str, count: int, name: str) -> Array:
    """``count`` comma-separated floats (one value is repeated ``count`` times), float32."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if len(values) == 1:
        values *= count
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} needs {count} finite comma-separated values, got {text!r}")
    return np.asarray(values, dtype=np.float32)
