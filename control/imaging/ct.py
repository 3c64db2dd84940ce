"""A CT series as the ``ct_head`` model reads it: Hounsfield units, slices first, in order.

Pure function over parsed data sets (numpy and pydicom); no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pydicom

from control.errors import InvalidInputError
from control.imaging.volumes import series_volume

#: The slice-to-slice step may lean this far (degrees) from the slice normal before the
#: series counts as acquired with a tilted gantry.
MAX_TILT_DEGREES = 0.5
_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True, eq=False)
class CtVolume:
    """``hu`` INT16 [slices, rows, columns] in position order (inferior to superior for an
    axial series), ``spacing_mm`` FP32 [3] (slice step, row spacing, column spacing) and, per
    slice, the index of its data set in the input and its position along the normal (mm)."""

    hu: npt.NDArray[np.int16]
    spacing_mm: npt.NDArray[np.float32]
    source_index: tuple[int, ...]
    position_mm: tuple[float, ...]


def head_ct_volume(datasets: Sequence[pydicom.Dataset]) -> CtVolume:
    """One CT series as an HU volume.

    Slices are sorted by position and the modality LUT (RescaleSlope/Intercept) applied as
    for every series (:func:`control.imaging.volumes.series_volume`, which rejects missing
    geometry, mixed sizes or orientations, duplicate positions and uneven spacing with code
    ``series_inconsistent`` / ``series_not_volume``). Also rejected here, with
    ``InvalidInputError``: a series that is not CT (``not_ct``), a tilted gantry
    (``gantry_tilt``: GantryDetectorTilt other than 0, or slices stepping off the normal) and
    values outside INT16 (``hu_out_of_range``). Values are rounded to whole HU.
    """
    modalities = {str(ds.get("Modality", "")).upper() for ds in datasets}
    if modalities - {"CT"}:
        raise InvalidInputError(
            f"the series is {'/'.join(sorted(modalities))}, not CT",
            code="not_ct",
            detail={"modalities": sorted(modalities)},
        )
    for index, ds in enumerate(datasets):
        tilt = _float(ds.get("GantryDetectorTilt"))
        if tilt is not None and abs(tilt) > 1e-3:
            raise _tilted(f"instance {index} records a gantry tilt of {tilt:g} degrees", tilt)
    volume = series_volume(datasets)
    step = volume.affine[:3, 2]
    normal = np.cross(volume.affine[:3, 0], volume.affine[:3, 1])
    cosine = abs(float(step @ normal)) / float(np.linalg.norm(step) * np.linalg.norm(normal))
    angle = float(np.degrees(np.arccos(min(1.0, cosine))))
    if angle > MAX_TILT_DEGREES:
        raise _tilted(f"the slices step {angle:.2f} degrees off their normal", angle)

    hu = np.rint(np.transpose(volume.data, (2, 1, 0)))  # [i, j, k] -> [slice, row, column]
    low, high = float(hu.min()), float(hu.max())
    if low < _INT16.min or high > _INT16.max:
        raise InvalidInputError(
            f"values from {low:g} to {high:g} HU do not fit INT16",
            code="hu_out_of_range",
            detail={"min": low, "max": high},
        )
    column_mm, row_mm, slice_mm = volume.spacing_mm
    first = np.asarray(volume.affine[:3, 3])
    unit_normal = normal / np.linalg.norm(normal)
    positions = tuple(float((first + k * step) @ unit_normal) for k in range(hu.shape[0]))
    return CtVolume(
        hu=np.ascontiguousarray(hu, dtype=np.int16),
        spacing_mm=np.array([slice_mm, row_mm, column_mm], dtype=np.float32),
        source_index=volume.slice_order,
        position_mm=positions,
    )


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _tilted(message: str, degrees: float) -> InvalidInputError:
    return InvalidInputError(
        f"{message}; tilted-gantry series must be resampled to an orthogonal grid first",
        code="gantry_tilt",
        detail={"degrees": round(degrees, 3)},
    )
