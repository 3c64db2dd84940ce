"""3-D volumes in world coordinates: from DICOM series and NIfTI files, resampled onto one grid.

Every volume carries a NIfTI-style affine that maps voxel indices ``(i, j, k)`` to RAS+
millimetres (x towards the patient's right, y anterior, z superior). DICOM patient
coordinates are LPS+ (x towards the left, y posterior), so x and y are negated on the way in.
Resampling goes through world coordinates, so series acquired on different grids (slice
thickness, in-plane resolution, field of view, orientation) line up physically.

:func:`brats_input` builds the ``brats`` model inputs ``VOLUME`` (float32 ``[4, X, Y, Z]`` in
:data:`BRATS_CHANNELS` order) and ``SPACING_MM`` (float32 ``[3]``) on the FLAIR grid.

Pure functions: numpy, scipy.ndimage, nibabel and pydicom; no file or network I/O.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nibabel
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array
from scipy import ndimage

from control.dicom.nifti import CHANNELS
from control.errors import InvalidInputError

__all__ = [
    "BRATS_CHANNELS",
    "Volume",
    "brats_input",
    "nifti_bytes",
    "nifti_channels",
    "nifti_image",
    "resample_to",
    "series_volume",
]

BRATS_CHANNELS = CHANNELS
"""Channel order of the ``brats`` model's ``VOLUME`` input."""

#: DICOM patient coordinates (LPS) to NIfTI world coordinates (RAS+): negate x and y.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Slice gaps may deviate this much (relative to the mean gap) before a series is rejected.
_SLICE_GAP_TOLERANCE = 0.10
#: Two slices closer than this along the normal (millimetres) occupy the same position.
_DUPLICATE_POSITION_MM = 1e-2
#: Direction cosines of two slices differing by more than this are different orientations.
_ORIENTATION_TOLERANCE = 1e-3
#: Relative difference in PixelSpacing tolerated between slices of one series.
_PIXEL_SPACING_TOLERANCE = 1e-3
#: Affines equal to within this (millimetres, element-wise) describe the same grid.
_SAME_GRID_ATOL_MM = 1e-4
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI2_HEADER_BYTES = 540


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image and the voxel-to-world matrix of its grid.

    ``data`` is indexed ``[i, j, k]`` (float32 for images; label maps keep their integer
    type); ``affine`` is the float64 4x4 matrix mapping voxel ``(i, j, k)`` to RAS+
    millimetres (NIfTI convention).
    """

    data: npt.NDArray[Any]
    affine: npt.NDArray[np.float64]
    #: For a volume built from a series: the input instance behind each ``k`` (index into the
    #: sequence given to :func:`series_volume`).
    slice_order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if np.ndim(self.data) != 3:
            raise ValueError(f"volume data must be 3-D, got shape {np.shape(self.data)}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in millimetres (column norms of ``affine[:3, :3]``)."""
        spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(spacing[0]), float(spacing[1]), float(spacing[2])


@dataclass(frozen=True)
class _SliceGeometry:
    rows: int
    columns: int
    row_cosines: npt.NDArray[np.float64]  # direction of increasing column index
    column_cosines: npt.NDArray[np.float64]  # direction of increasing row index
    pixel_spacing: tuple[float, float]  # (between rows, between columns), millimetres
    position: npt.NDArray[np.float64]  # ImagePositionPatient (LPS) of the first voxel


def series_volume(datasets: Sequence[pydicom.Dataset]) -> Volume:
    """One 3-D volume from the single-frame 2-D instances of one series.

    Slices are sorted by their position along the slice normal (ImagePositionPatient
    projected on the cross product of the ImageOrientationPatient direction cosines), voxel
    values are taken after the modality LUT (RescaleSlope/Intercept) of each instance, and
    ``i`` is the column index, ``j`` the row index and ``k`` the slice index. The ``k`` axis
    of the affine runs from the first to the last slice position, so gantry tilt is kept. A
    single slice gets a slice step of SpacingBetweenSlices, else SliceThickness, else 1 mm.

    Raises :class:`~control.errors.InvalidInputError` with code ``series_empty`` (no
    instances), ``series_not_volume`` (an instance without usable ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing, Rows/Columns or single-frame grey-scale pixel
    data) or ``series_inconsistent`` (instances with different Rows/Columns, orientation or
    PixelSpacing, two at the same position, or slice gaps deviating more than 10% from
    uniform).
    """
    if not datasets:
        raise InvalidInputError("the series has no instances", code="series_empty")
    geometries = [_slice_geometry(ds, index) for index, ds in enumerate(datasets)]
    first = geometries[0]
    for index, geometry in enumerate(geometries[1:], start=1):
        _check_same_plane(first, geometry, index)

    normal = np.cross(first.row_cosines, first.column_cosines)
    distances = np.array([float(geometry.position @ normal) for geometry in geometries])
    order = np.argsort(distances, kind="stable")
    positions = np.stack([geometries[index].position for index in order])
    slice_step = _slice_step(datasets, distances[order], positions, normal)

    data = np.empty((first.columns, first.rows, len(datasets)), dtype=np.float32)
    for k, index in enumerate(order):
        data[:, :, k] = _slice_pixels(datasets[index], first, int(index)).T

    lps = np.eye(4)
    lps[:3, 0] = first.row_cosines * first.pixel_spacing[1]
    lps[:3, 1] = first.column_cosines * first.pixel_spacing[0]
    lps[:3, 2] = slice_step
    lps[:3, 3] = positions[0]
    return Volume(data=data, affine=_LPS_TO_RAS @ lps, slice_order=tuple(int(i) for i in order))


def nifti_channels(payload: bytes) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """``(data, affine)`` of a stored four-channel NIfTI file (gzip-compressed or not).

    The file holds shape ``(X, Y, Z, 4)``, channels last in :data:`BRATS_CHANNELS` order;
    ``data`` is float32 ``(4, X, Y, Z)`` (scaling applied) and ``affine`` the float64 4x4
    voxel-to-RAS+ matrix. Raises ``InvalidInputError`` with code ``volume_not_four_channel``
    for any other shape and ``corrupt_nifti`` when the bytes are not a readable NIfTI file.
    """
    try:
        raw = gzip.decompress(payload) if payload.startswith(_GZIP_MAGIC) else payload
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt_nifti(f"damaged gzip stream: {exc}") from exc
    try:
        image = nifti_image(raw)
        affine = image.affine
    except Exception as exc:  # nibabel reports damage with many exception types
        raise _corrupt_nifti(str(exc)) from exc
    if affine is None:
        raise _corrupt_nifti("no affine")
    shape = tuple(int(size) for size in image.shape)
    if len(shape) != 4 or shape[3] != len(BRATS_CHANNELS):
        raise InvalidInputError(
            f"the volume must have shape (X, Y, Z, {len(BRATS_CHANNELS)}), got {shape}",
            code="volume_not_four_channel",
            detail={"shape": list(shape)},
        )
    try:
        voxels = np.asarray(image.get_fdata(dtype=np.float32), dtype=np.float32)
    except Exception as exc:  # nibabel reports unreadable data with many exception types
        raise _corrupt_nifti(f"voxel data unreadable: {exc}") from exc
    data = np.ascontiguousarray(np.moveaxis(voxels, -1, 0))
    return data, np.array(affine, dtype=np.float64)


def nifti_image(payload: bytes) -> nibabel.Nifti1Image:
    """The NIfTI-1 or NIfTI-2 image in ``payload`` (gzip-compressed or not); raises what
    gzip or nibabel raise for damaged bytes."""
    raw = gzip.decompress(payload) if payload.startswith(_GZIP_MAGIC) else payload
    image: nibabel.Nifti1Image = _nifti_class(raw).from_bytes(raw)
    return image


def nifti_bytes(
    data: npt.NDArray[Any], affine: npt.NDArray[np.float64], *, compresslevel: int = 1
) -> bytes:
    """A gzip NIfTI-1 file of ``data`` with ``affine`` (mm), reproducible byte for byte."""
    image = nibabel.Nifti1Image(data, affine)  # type: ignore[no-untyped-call]
    image.header.set_xyzt_units("mm", "sec")  # type: ignore[no-untyped-call]
    return gzip.compress(image.to_bytes(), compresslevel=compresslevel, mtime=0)


def resample_to(
    volume: Volume,
    target_shape: Sequence[int],
    target_affine: npt.ArrayLike,
    *,
    order: int = 1,
) -> npt.NDArray[Any]:
    """``volume.data`` resampled onto the grid ``(target_shape, target_affine)``.

    Each target voxel is mapped through ``target_affine`` to world coordinates and through
    the inverse of ``volume.affine`` to source voxel coordinates. ``order=1`` interpolates
    linearly and returns float32; ``order=0`` takes the nearest voxel and keeps the source
    dtype (label maps). Target voxels whose centre falls outside the source voxels' extent
    (half a voxel beyond the outer centres) are 0. When the grids are the same (equal shapes,
    affines equal within 1e-4 mm) the data comes back unchanged, without interpolation.
    Raises ``InvalidInputError("volume_affine_singular")`` for a non-invertible source
    affine and ``ValueError`` for a bad ``order``, shape or target affine.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    shape = tuple(int(size) for size in target_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"target shape must be three positive sizes, got {target_shape}")
    target = np.asarray(target_affine, dtype=np.float64)
    if target.shape != (4, 4):
        raise ValueError(f"target affine must be 4x4, got shape {target.shape}")
    source = volume.data if order == 0 else volume.data.astype(np.float32, copy=False)
    if shape == source.shape and np.allclose(
        target, volume.affine, rtol=0.0, atol=_SAME_GRID_ATOL_MM
    ):
        return source

    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-12:
        raise InvalidInputError(
            "the volume's affine is singular; its voxels have no position in space",
            code="volume_affine_singular",
        )
    source_from_target = np.linalg.solve(volume.affine, target)
    linear = source_from_target[:3, :3]
    offset = source_from_target[:3, 3]
    # A diagonal matrix lets scipy take its faster axis-aligned path.
    matrix = np.diag(linear) if np.allclose(linear, np.diag(np.diag(linear))) else linear

    def transform(data: npt.NDArray[Any], order: int, mode: str) -> npt.NDArray[Any]:
        result: npt.NDArray[Any] = ndimage.affine_transform(
            data,
            matrix,
            offset=offset,
            output_shape=shape,
            output=data.dtype,
            order=order,
            mode=mode,
            cval=0,
        )
        return result

    if order == 0:
        # grid-constant keeps exactly the points within half a voxel of the outer centres.
        return transform(source, 0, "grid-constant")
    resampled = transform(source, 1, "nearest")
    inside = transform(np.ones(source.shape, dtype=np.uint8), 0, "grid-constant")
    resampled[inside == 0] = 0
    return resampled


def brats_input(
    series: Mapping[str, Volume],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """``(VOLUME, SPACING_MM, affine)`` for the ``brats`` model, on the FLAIR grid.

    ``series`` maps channel names (:data:`BRATS_CHANNELS`; other keys are ignored) to their
    volumes. ``VOLUME`` is float32 ``[4, X, Y, Z]`` in :data:`BRATS_CHANNELS` order with every
    channel but FLAIR linearly resampled onto FLAIR's grid; ``SPACING_MM`` is float32 ``[3]``,
    FLAIR's voxel size; ``affine`` is FLAIR's voxel-to-RAS+ matrix (a copy). Raises
    ``InvalidInputError("sequences_missing")`` naming the missing channels in ``detail``.
    """
    missing = [channel for channel in BRATS_CHANNELS if channel not in series]
    if missing:
        raise InvalidInputError(
            f"the study lacks the MR sequences {', '.join(missing)}; the brain tumour model "
            f"needs {', '.join(BRATS_CHANNELS)}",
            code="sequences_missing",
            detail={"missing": missing},
        )
    flair = series["FLAIR"]
    shape = (int(flair.data.shape[0]), int(flair.data.shape[1]), int(flair.data.shape[2]))
    volume = np.empty((len(BRATS_CHANNELS), *shape), dtype=np.float32)
    for index, channel in enumerate(BRATS_CHANNELS):
        volume[index] = resample_to(series[channel], shape, flair.affine, order=1)
    spacing = np.asarray(flair.spacing_mm, dtype=np.float32)
    return volume, spacing, flair.affine.copy()


def _slice_geometry(ds: pydicom.Dataset, index: int) -> _SliceGeometry:
    """The plane of one instance; ``series_not_volume`` when an attribute is unusable."""
    try:
        rows = int(ds.Rows)
        columns = int(ds.Columns)
        orientation = _floats(ds.ImageOrientationPatient, 6)
        spacing = _floats(ds.PixelSpacing, 2)
        position = _floats(ds.ImagePositionPatient, 3)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _not_volume(index, f"missing or malformed geometry: {exc}") from exc
    if rows < 1 or columns < 1:
        raise _not_volume(index, f"image size {rows}x{columns}")
    if min(spacing) <= 0 or not np.isfinite(spacing).all():
        raise _not_volume(index, f"PixelSpacing {spacing.tolist()}")
    if not np.isfinite(position).all():
        raise _not_volume(index, f"ImagePositionPatient {position.tolist()}")
    row_cosines, column_cosines = orientation[:3], orientation[3:]
    norms = np.linalg.norm(row_cosines), np.linalg.norm(column_cosines)
    if (
        not np.isfinite(orientation).all()
        or min(norms) < 0.5
        or abs(float(row_cosines @ column_cosines)) > 0.01 * norms[0] * norms[1]
    ):
        raise _not_volume(index, f"ImageOrientationPatient {orientation.tolist()}")
    return _SliceGeometry(
        rows=rows,
        columns=columns,
        row_cosines=row_cosines / norms[0],
        column_cosines=column_cosines / norms[1],
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        position=position,
    )


def _check_same_plane(first: _SliceGeometry, other: _SliceGeometry, index: int) -> None:
    if (other.rows, other.columns) != (first.rows, first.columns):
        raise _inconsistent(
            f"instance {index} is {other.rows}x{other.columns} pixels, "
            f"the first is {first.rows}x{first.columns}",
            index,
        )
    if not (
        np.allclose(other.row_cosines, first.row_cosines, atol=_ORIENTATION_TOLERANCE)
        and np.allclose(other.column_cosines, first.column_cosines, atol=_ORIENTATION_TOLERANCE)
    ):
        raise _inconsistent(f"instance {index} has a different orientation", index)
    if not np.allclose(
        other.pixel_spacing, first.pixel_spacing, rtol=_PIXEL_SPACING_TOLERANCE, atol=0.0
    ):
        raise _inconsistent(
            f"instance {index} has PixelSpacing {list(other.pixel_spacing)}, "
            f"the first {list(first.pixel_spacing)}",
            index,
        )


def _slice_step(
    datasets: Sequence[pydicom.Dataset],
    distances: npt.NDArray[np.float64],
    positions: npt.NDArray[np.float64],
    normal: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The LPS vector from one slice to the next (sorted inputs), after the uniformity checks."""
    count = len(distances)
    if count == 1:
        thickness = _positive_number(datasets[0], "SpacingBetweenSlices") or _positive_number(
            datasets[0], "SliceThickness"
        )
        step: npt.NDArray[np.float64] = normal * (thickness or 1.0)
        return step
    gaps = np.diff(distances)
    if float(gaps.min()) < _DUPLICATE_POSITION_MM:
        at = int(np.argmin(gaps))
        raise InvalidInputError(
            f"two instances share the slice position {distances[at]:.3f} mm",
            code="series_inconsistent",
            detail={"reason": "duplicate_position", "position_mm": float(distances[at])},
        )
    mean_gap = float(distances[-1] - distances[0]) / (count - 1)
    step = (positions[-1] - positions[0]) / (count - 1)
    expected = positions[0] + np.outer(np.arange(count), step)
    off_line = float(np.linalg.norm(positions - expected, axis=1).max())
    worst_gap = float(np.abs(gaps - mean_gap).max())
    if max(worst_gap, off_line) > _SLICE_GAP_TOLERANCE * mean_gap:
        raise InvalidInputError(
            f"slice positions are not evenly spaced: gaps from {gaps.min():.3f} to "
            f"{gaps.max():.3f} mm (missing or extra slices?)",
            code="series_inconsistent",
            detail={
                "reason": "non_uniform_spacing",
                "min_gap_mm": float(gaps.min()),
                "max_gap_mm": float(gaps.max()),
            },
        )
    return step


def _slice_pixels(
    ds: pydicom.Dataset, geometry: _SliceGeometry, index: int
) -> npt.NDArray[np.float32]:
    """One instance's pixels ``[row, column]`` after the modality LUT, as float32."""
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise _not_volume(index, "colour images are not MR volumes")
    try:
        pixels = pixel_array(ds)
    except Exception as exc:  # missing pixel data or an undecodable transfer syntax
        raise _not_volume(index, f"pixel data unreadable: {exc}") from exc
    if pixels.shape != (geometry.rows, geometry.columns):
        raise _not_volume(
            index,
            f"pixel data of shape {pixels.shape} is not one {geometry.rows}x{geometry.columns} "
            "frame (multi-frame instances are not supported)",
        )
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)


def _floats(value: Any, count: int) -> npt.NDArray[np.float64]:
    if value is None or isinstance(value, str | bytes):
        raise ValueError(f"expected {count} numbers, got {value!r}")
    numbers = np.array([float(item) for item in value], dtype=np.float64)
    if numbers.shape != (count,):
        raise ValueError(f"expected {count} numbers, got {numbers.size}")
    return numbers


def _positive_number(ds: pydicom.Dataset, keyword: str) -> float | None:
    try:
        number = float(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _nifti_class(raw: bytes) -> type[nibabel.Nifti1Image]:
    """NIfTI-2 when ``sizeof_hdr`` says so (either byte order), else NIfTI-1."""
    if len(raw) >= 4:
        for byte_order in "<>":
            if struct.unpack(f"{byte_order}i", raw[:4])[0] == _NIFTI2_HEADER_BYTES:
                return nibabel.Nifti2Image
    return nibabel.Nifti1Image


def _not_volume(index: int, reason: str) -> InvalidInputError:
    return InvalidInputError(
        f"instance {index} cannot be placed in a volume: {reason}",
        code="series_not_volume",
        detail={"instance": index, "reason": reason},
    )


def _inconsistent(message: str, index: int) -> InvalidInputError:
    return InvalidInputError(
        f"the series' instances do not form one volume: {message}",
        code="series_inconsistent",
        detail={"instance": index},
    )


def _corrupt_nifti(reason: str) -> InvalidInputError:
    return InvalidInputError(f"corrupt NIfTI file: {reason}", code="corrupt_nifti")
