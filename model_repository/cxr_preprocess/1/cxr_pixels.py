"""Chest X-ray pixels to the network input: numpy only, the same code as training.

Used by the ``cxr_preprocess`` Triton model and by its tests. The steps are those of
training and evaluation (``training.data.preprocess``): scale to [0, 1] and invert
MONOCHROME1 (``xray_to_float``), fit into ``size`` x ``size`` keeping the aspect ratio with
centred zero padding (``resize_with_padding``), then z-score with the training mean and std
(``zscore``).

Bit depth: the ensemble receives no Bits Stored value, so the scale is inferred from the
pixels: ``2**bits - 1`` with ``bits = max(8, ceil(log2(max + 1)))``. An 8-bit image
(training PNGs, divided by 255) keeps its scale; a 12-bit radiograph whose brightest pixel
needs 12 bits is divided by 4095, as ``xray_to_float`` would with Bits Stored 12. A
deployment whose images use a known depth can pin it with the ``bits_stored`` parameter.
"""

from __future__ import annotations

import numpy as np

from medvision_contract.preprocess import resize_with_padding, xray_to_float, zscore

MIN_BITS = 8
GEOMETRY_FIELDS = ("height", "width", "scale", "pad_y", "pad_x")


def inferred_bits(pixels: np.ndarray) -> int:
    """Bits needed for the largest pixel value, at least 8: ``max(8, ceil(log2(max + 1)))``."""
    return max(MIN_BITS, int(pixels.max()).bit_length())


def validate_pixels(pixels: np.ndarray, max_pixels: int) -> None:
    """Raise ``ValueError`` unless ``pixels`` is a non-empty 2-D image of at most ``max_pixels``."""
    if pixels.ndim != 2:
        raise ValueError(f"PIXELS must be a 2-D image [rows, columns], got shape {pixels.shape}")
    if pixels.size == 0:
        raise ValueError(f"PIXELS is empty (shape {pixels.shape})")
    if pixels.size > max_pixels:
        raise ValueError(
            f"PIXELS has {pixels.size} pixels ({pixels.shape[0]}x{pixels.shape[1]}), "
            f"more than the limit of {max_pixels}"
        )


def preprocess_pixels(
    pixels: np.ndarray,
    *,
    invert: bool,
    size: int,
    mean: float,
    std: float,
    bits_stored: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The network input [1, 1, size, size] float32 and the geometry [5] float32.

    ``pixels`` are stored values after the modality LUT (non-negative integers); ``invert``
    is true for MONOCHROME1. ``bits_stored`` None infers the depth (:func:`inferred_bits`).
    The geometry is ``(height, width, scale, pad_y, pad_x)`` of ``resize_with_padding``:
    input pixel ``(y, x)`` lands on ``(y * scale + pad_y, x * scale + pad_x)``.
    """
    bits = inferred_bits(pixels) if bits_stored is None else bits_stored
    unit = xray_to_float(
        pixels, photometric="MONOCHROME1" if invert else "MONOCHROME2", bits_stored=bits
    )
    fitted, scale, (pad_y, pad_x) = resize_with_padding(unit, size)
    image = zscore(fitted, mean, std)[None, None]
    height, width = pixels.shape
    geometry = np.array([height, width, scale, pad_y, pad_x], dtype=np.float32)
    return image, geometry
