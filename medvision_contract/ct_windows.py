"""Head CT slices to the ``ct_head`` network input: Hounsfield windows as channels.

numpy only, used by training (datasets, evaluation), export (parity inputs) and the
``ct_head_preprocess`` Triton model, so all of them feed the network the same numbers.

Each slice becomes three channels, one per window of ``CT_HEAD_WINDOWS`` (centre/width in
HU): brain 40/80 (parenchyma and fresh blood, 0–80 HU), subdural 80/200 (blood against the
skull's inner table, where the brain window saturates) and bone 600/2800 (the skull, so
extra-axial collections can be told from the bone next to them). These are the windows of
the top RSNA 2019 solutions (the network's inputs; the viewer's display presets are
``preprocess.WINDOW_PRESETS``). With ``context`` k > 0 the windows of the k slices above and
below are stacked too (2.5-D; edge slices repeat the nearest slice), ordered from the
lowest slice index to the highest, windows fastest: ``(2k + 1) * 3`` channels.

The slice is fitted into ``size`` x ``size`` keeping its aspect ratio (``resize_with_padding``)
in Hounsfield units *before* windowing, with air (-1024 HU) as padding, so a window never
sees an interpolated clip edge and padding looks like air in every channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from medvision_contract.preprocess import resize_with_padding, window

Array = npt.NDArray[Any]

# (name, centre HU, width HU), channel order of every slice.
CT_HEAD_WINDOWS: tuple[tuple[str, float, float], ...] = (
    ("brain", 40.0, 80.0),
    ("subdural", 80.0, 200.0),
    ("bone", 600.0, 2800.0),
)
AIR_HU = -1024.0
#: Largest volume (voxels) the serving path accepts by default.
MAX_VOXELS = 512 * 512 * 512


def channels_per_slice(context: int, windows: int = len(CT_HEAD_WINDOWS)) -> int:
    """Network input channels for ``context`` neighbours on each side: ``(2k + 1) * windows``."""
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    return (2 * context + 1) * windows


def neighbour_indices(n_slices: int, context: int) -> Array:
    """[n_slices, 2k + 1] slice indices i - k .. i + k per slice, clamped to the volume."""
    if n_slices < 1:
        raise ValueError("a volume needs at least one slice")
    offsets = np.arange(-context, context + 1)
    return np.clip(np.arange(n_slices)[:, None] + offsets[None, :], 0, n_slices - 1)


def validate_volume(volume_hu: Array, spacing_mm: Array, max_voxels: int) -> None:
    """Raise ``ValueError`` unless ``volume_hu`` is a non-empty [slices, rows, columns]
    volume of at most ``max_voxels`` and ``spacing_mm`` three finite positive sizes."""
    if volume_hu.ndim != 3 or 0 in volume_hu.shape:
        raise ValueError(
            f"VOLUME must be a non-empty [slices, rows, columns], got {volume_hu.shape}"
        )
    if volume_hu.size > max_voxels:
        raise ValueError(f"VOLUME has {volume_hu.size} voxels, more than {max_voxels}")
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if spacing.size != 3 or not np.all(np.isfinite(spacing)) or not np.all(spacing > 0):
        raise ValueError(f"SPACING_MM must hold 3 finite positive sizes, got {spacing.tolist()}")


def fit_slices(volume_hu: Array, size: int) -> tuple[Array, Array]:
    """Every slice fitted into ``size`` x ``size`` (aspect kept, air padding), float32 HU
    [S, size, size], and the geometry [5] ``(height, width, scale, pad_y, pad_x)`` shared by
    all slices: input pixel ``(y, x)`` lands on ``(y * scale + pad_y, x * scale + pad_x)``."""
    fitted = np.empty((volume_hu.shape[0], size, size), dtype=np.float32)
    scale, pad = 1.0, (0, 0)
    for index, slice_hu in enumerate(np.asarray(volume_hu, dtype=np.float32)):
        shifted, scale, pad = resize_with_padding(slice_hu - np.float32(AIR_HU), size)
        fitted[index] = shifted + np.float32(AIR_HU)
    height, width = volume_hu.shape[1:]
    geometry = np.array([height, width, scale, pad[0], pad[1]], dtype=np.float32)
    return fitted, geometry


def window_slices(
    slices_hu: Array,
    windows: tuple[tuple[str, float, float], ...] = CT_HEAD_WINDOWS,
) -> Array:
    """[S, H, W] HU to [S, len(windows), H, W] float32 in [0, 1], one channel per window."""
    return np.stack([window(slices_hu, centre, width) for _, centre, width in windows], axis=1)


def stack_neighbours(windowed: Array, context: int) -> Array:
    """[S, C, H, W] to [S, (2k + 1) * C, H, W]: each slice with its k neighbours each side."""
    indices = neighbour_indices(windowed.shape[0], context)
    stacked = windowed[indices]  # [S, 2k + 1, C, H, W]
    return stacked.reshape(windowed.shape[0], -1, *windowed.shape[2:])


def ct_head_input(
    volume_hu: Array,
    *,
    size: int,
    context: int = 0,
    windows: tuple[tuple[str, float, float], ...] = CT_HEAD_WINDOWS,
) -> tuple[Array, Array]:
    """The network input of a head CT volume [S, H, W] in HU (slices first, in position
    order): float32 [S, (2k + 1) * 3, size, size] in [0, 1], and the geometry [5] of
    :func:`fit_slices`."""
    fitted, geometry = fit_slices(volume_hu, size)
    return stack_neighbours(window_slices(fitted, windows), context), geometry


def parse_windows(text: str) -> tuple[tuple[str, float, float], ...]:
    """Windows from the config form ``"brain:40:80,subdural:80:200,bone:600:2800"``."""
    windows = []
    for part in text.split(","):
        name, centre, width = part.strip().split(":")
        if float(width) <= 0:
            raise ValueError(f"window {name!r} needs a positive width, got {width}")
        windows.append((name, float(centre), float(width)))
    if not windows:
        raise ValueError("no windows given")
    return tuple(windows)


def format_windows(windows: tuple[tuple[str, float, float], ...] = CT_HEAD_WINDOWS) -> str:
    """The config form of ``windows`` (inverse of :func:`parse_windows`)."""
    return ",".join(f"{name}:{centre:g}:{width:g}" for name, centre, width in windows)
