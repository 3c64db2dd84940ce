"""Pixel preprocessing shared by training, the Triton preprocessing model and DICOM inference.

numpy only (pydicom only inside :func:`dicom_to_cxr_input`), so the same code runs in a
Triton Python model and in training, and their outputs match exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pydicom

Array = npt.NDArray[Any]

# (center, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def apply_modality_lut(pixels: Array, slope: float, intercept: float) -> Array:
    """Stored values to modality values (e.g. HU): ``pixels * slope + intercept`` as a new
    float32 array (``pixels`` is left as it is)."""
    values = pixels.astype(np.float32)  # one full-size array, scaled in place
    if slope != 1:
        values *= np.float32(slope)
    if intercept != 0:
        values += np.float32(intercept)
    return values


def invert_monochrome1(pixels: Array, bits_stored: int) -> Array:
    """MONOCHROME1 to MONOCHROME2: ``(2**bits_stored - 1) - pixels``, same dtype as the input.

    Values are first clipped to ``[0, 2**bits_stored - 1]``.
    """
    max_value = (1 << int(bits_stored)) - 1
    return (max_value - np.clip(pixels, 0, max_value)).astype(pixels.dtype)


def window(pixels_hu: Array, center: float, width: float) -> Array:
    """Linear window: ``center - width/2`` maps to 0 and ``center + width/2`` to 1, clipped."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    scaled = (np.asarray(pixels_hu, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def xray_to_float(
    pixels: Array,
    *,
    photometric: str,
    bits_stored: int,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> Array:
    """Stored X-ray pixels to float32 in [0, 1] where bright is dense (MONOCHROME2 sense).

    Applies the modality LUT, scales by the largest value ``bits_stored`` bits can hold
    (after the LUT), and inverts MONOCHROME1. With slope 1 and intercept 0 this equals
    ``invert_monochrome1(pixels, bits_stored) / (2**bits_stored - 1)`` for MONOCHROME1.
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"expected MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    values = apply_modality_lut(pixels, slope, intercept)
    ends = apply_modality_lut(np.array([0, (1 << int(bits_stored)) - 1]), slope, intercept)
    low, high = float(ends.min()), float(ends.max())
    scaled = np.clip((values - np.float32(low)) / np.float32(high - low), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def resize(image: Array, shape: tuple[int, int]) -> Array:
    """Bilinear resize of a 2-D image to ``shape`` (pixel-area convention), float32.

    Shrinking by a factor of 2 or more first averages integer blocks, so downsampling does
    not alias.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    rows = _sample_axis(image, 0, shape[0])
    return _sample_axis(rows, 1, shape[1])


def padding_geometry(shape: tuple[int, ...], size: int) -> tuple[float, tuple[int, int]]:
    """The scale and ``(pad_y, pad_x)`` that :func:`resize_with_padding` uses for ``shape``."""
    scale = size / max(shape[0], shape[1])
    new_h, new_w = _scaled_shape(shape, scale)
    return scale, ((size - new_h) // 2, (size - new_w) // 2)


def resize_with_padding(image: Array, size: int) -> tuple[Array, float, tuple[int, int]]:
    """Fit a 2-D image into ``size`` x ``size`` keeping its aspect ratio, zero-padded centred.

    Returns the float32 image, the scale (output pixels per input pixel) and the
    ``(pad_y, pad_x)`` offsets: input pixel ``(y, x)`` lands on
    ``(y * scale + pad_y, x * scale + pad_x)``. :func:`undo_resize_with_padding` inverts it.
    """
    scale, (pad_y, pad_x) = padding_geometry(image.shape, size)
    new_h, new_w = _scaled_shape(image.shape, scale)
    out = np.zeros((size, size), dtype=np.float32)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resize(image, (new_h, new_w))
    return out, scale, (pad_y, pad_x)


def undo_resize_with_padding(
    image: Array, original_shape: tuple[int, int], scale: float, pad: tuple[int, int]
) -> Array:
    """Map a ``size`` x ``size`` map (e.g. a CAM) back onto the original image grid, float32."""
    new_h, new_w = _scaled_shape(original_shape, scale)
    pad_y, pad_x = pad
    return resize(image[pad_y : pad_y + new_h, pad_x : pad_x + new_w], original_shape)


def zscore(image: Array, mean: float, std: float) -> Array:
    """``(image - mean) / std`` as float32; ``std`` must be positive."""
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    return ((np.asarray(image, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(
        np.float32
    )


def brain_zscore(volume: Array) -> Array:
    """Per-channel z-score of a [C, ...] volume over its nonzero (brain) voxels, float32.

    Background (zero) voxels stay 0. Matches MONAI ``NormalizeIntensity(nonzero=True,
    channel_wise=True)``: population std, and a std of 0 divides by 1.
    """
    out = np.asarray(volume, dtype=np.float32).copy()
    for channel in out:
        brain = channel != 0
        if not brain.any():
            continue
        values = channel[brain]
        std = float(values.std())
        channel[brain] = (values - values.mean()) / (std if std != 0.0 else 1.0)
    return out


def dicom_to_cxr_input(ds: pydicom.Dataset) -> Array:
    """A single-frame radiograph's pixels as float32 [H, W] in [0, 1], MONOCHROME2 sense.

    Uses the stored pixels, Rescale Slope/Intercept, Bits Stored and Photometric
    Interpretation. Colour data (which pydicom hands over as RGB) is reduced to luma.
    Multi-frame data raises ValueError.
    """
    pixels = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    bits_stored = int(ds.get("BitsStored", 8 * pixels.dtype.itemsize))
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        pixels = pixels.astype(np.float32) @ _LUMA
        photometric = "MONOCHROME2"
    if pixels.ndim != 2:
        raise ValueError(f"expected one 2-D frame, got pixel array of shape {pixels.shape}")
    return xray_to_float(
        pixels,
        photometric=photometric,
        bits_stored=bits_stored,
        slope=float(ds.get("RescaleSlope", 1.0)),
        intercept=float(ds.get("RescaleIntercept", 0.0)),
    )


def _scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _sample_axis(image: Array, axis: int, size: int) -> Array:
    """Resample one axis to ``size`` samples: block-average, then linear interpolation."""
    length = image.shape[axis]
    block = max(1, length // size)
    if block > 1:
        usable = (length // block) * block
        kept = np.take(image, np.arange(usable), axis=axis)
        shape = list(kept.shape)
        shape[axis : axis + 1] = [usable // block, block]
        image = kept.reshape(shape).mean(axis=axis + 1)
    reduced = image.shape[axis]
    centres = (np.arange(size, dtype=np.float64) + 0.5) * (length / size) - 0.5
    source = np.clip((centres + 0.5) / block - 0.5, 0.0, reduced - 1)
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, reduced - 1)
    weight = (source - lower).astype(np.float32)
    weight_shape = [1] * image.ndim
    weight_shape[axis] = size
    weight = weight.reshape(weight_shape)
    below, above = np.take(image, lower, axis=axis), np.take(image, upper, axis=axis)
    blended: Array = (below * (1.0 - weight) + above * weight).astype(np.float32)
    return blended
