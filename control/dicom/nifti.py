"""Parse and validate uploaded NIfTI files and assemble the four-channel brain MRI volume.

The ``brats`` model takes one float32 volume of shape ``(4, X, Y, Z)`` with the channels in
the order of :data:`CHANNELS`: T1, T1 with contrast (T1ce), T2 and T2-FLAIR, all on one grid.
An upload provides it either as one NIfTI file of shape ``(X, Y, Z, 4)`` whose last axis is
already in that order, or as four 3-D files whose channel is recognised from the file name.

Every size limit is checked from the header before voxel data is read or decompressed, and
every error is a :class:`~control.errors.MedVisionError` whose ``detail`` names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from math import prod

import nibabel
import numpy as np
import numpy.typing as npt

from control.dicom.reader import UploadLimits
from control.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaError
from medvision_contract.labels import MRI_CHANNELS

__all__ = [
    "CHANNELS",
    "ParsedVolume",
    "assemble_mri_volume",
    "looks_like_nifti",
    "read_nifti",
]

CHANNELS: tuple[str, ...] = MRI_CHANNELS
#: The SOP class recorded for a stored 4-channel NIfTI volume (not a DICOM UID).
NIFTI_SOP_CLASS = "nifti"
"""Channel order of :attr:`ParsedVolume.data` (BraTS 2023: t1n, t1c, t2w, t2f)."""

# File-name tokens (case-insensitive, split on anything but letters and digits) that name a
# channel: BraTS 2023 suffixes first, then the BraTS 2017-2021 and Medical Decathlon names.
_CHANNEL_TOKENS: dict[str, int] = {
    "t1n": 0,
    "t1": 0,
    "t1c": 1,
    "t1ce": 1,
    "t1gd": 1,
    "t2w": 2,
    "t2": 2,
    "t2f": 3,
    "flair": 3,
}
#: Bytes per voxel of the volume the pipeline holds (float32).
_PIPELINE_ITEMSIZE = 4
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_HEADER_BYTES = 348
_NIFTI2_HEADER_BYTES = 540
_NIFTI1_MAGIC = b"n+1\x00"
_NIFTI2_MAGIC = b"n+2\x00\r\n\x1a\n"
# Decompressed bytes a .nii.gz may carry beyond what its header declares (padding).
_TRAILING_SLACK_BYTES = 1024 * 1024
_AFFINE_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class ParsedVolume:
    """A validated four-channel MRI volume ready for the ``brats`` model.

    ``data`` is float32 ``(4, X, Y, Z)`` in :data:`CHANNELS` order and ``affine`` the 4x4
    voxel-to-world matrix shared by all channels; both are read-only. ``spacing_mm`` is the
    voxel size along X, Y, Z taken from the affine. ``filenames`` lists the source files in
    channel order. ``sha256`` is the hex digest of the single uploaded file, or of the four
    files' bytes concatenated in channel order.
    """

    data: npt.NDArray[np.float32]
    affine: npt.NDArray[np.float64]
    spacing_mm: tuple[float, float, float]
    filenames: tuple[str, ...]
    sha256: str


def looks_like_nifti(data: bytes, filename: str) -> bool:
    """True when ``data`` (optionally gzip-compressed) starts with a NIfTI-1 or NIfTI-2 header.

    The decision rests on the content alone: a ``sizeof_hdr`` of 348 with the single-file
    magic ``n+1`` or of 540 with ``n+2``, in either byte order. ``filename`` is accepted for
    symmetry with :func:`~control.dicom.reader.looks_like_dicom` callers and is not trusted.
    """
    return _image_class(_leading_bytes(data)) is not None


def read_nifti(data: bytes, filename: str, limits: UploadLimits) -> nibabel.Nifti1Image:
    """Parse one NIfTI-1 or NIfTI-2 file (``.nii`` or ``.nii.gz``) and validate it.

    Returns an image whose voxel data is complete but not yet loaded into an array (NIfTI-2
    images are :class:`nibabel.Nifti2Image`, a subclass). Raises
    ``PayloadTooLargeError("file_too_large")`` when ``data`` exceeds ``max_file_bytes``,
    ``UnsupportedMediaError("not_nifti")`` when it is not NIfTI,
    ``PayloadTooLargeError("volume_too_large")`` when the header declares more than
    ``max_volume_voxels`` voxels (checked before any voxel data is decompressed),
    ``UnsupportedMediaError("unsupported_nifti_datatype")`` for non-real voxel types, and
    ``InvalidInputError("corrupt_nifti")`` for a damaged header or gzip stream or voxel data
    shorter (or, compressed, much longer) than the header declares.
    """
    detail = {"filename": filename}
    if len(data) > limits.max_file_bytes:
        raise PayloadTooLargeError(
            f"{filename}: file is {len(data)} bytes, the limit is {limits.max_file_bytes}",
            code="file_too_large",
            detail={**detail, "bytes": len(data), "limit": limits.max_file_bytes},
        )
    inflater = gzip.GzipFile(fileobj=BytesIO(data)) if data.startswith(_GZIP_MAGIC) else None
    head = _inflate(inflater, _NIFTI2_HEADER_BYTES, filename) if inflater else data
    image_class = _image_class(head)
    if image_class is None:
        raise UnsupportedMediaError(
            f"{filename}: not a NIfTI file", code="not_nifti", detail=detail
        )
    header_bytes = (
        _NIFTI2_HEADER_BYTES if image_class is nibabel.Nifti2Image else _NIFTI1_HEADER_BYTES
    )
    try:
        header = image_class.header_class(head[:header_bytes], check=True)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nibabel reports header damage with many exception types
        raise _corrupt(filename, f"invalid header: {exc}") from exc
    needed = _declared_size(header, filename, limits)
    content = data
    if inflater:
        content = head + _inflate(inflater, needed + _TRAILING_SLACK_BYTES - len(head), filename)
        if _inflate(inflater, 1, filename):
            raise _corrupt(filename, "decompresses to far more data than the header declares")
    if len(content) < needed:
        raise _corrupt(filename, f"holds {len(content)} bytes, the header declares {needed}")
    try:
        image = image_class.from_bytes(content)
    except Exception as exc:  # nibabel reports damage with many exception types
        raise _corrupt(filename, str(exc)) from exc
    return image


def assemble_mri_volume(files: list[tuple[str, bytes]], limits: UploadLimits) -> ParsedVolume:
    """Build the four-channel brain MRI volume from one 4-channel file or four 3-D files.

    ``files`` holds ``(filename, bytes)`` pairs in any order. With one file its shape must be
    ``(X, Y, Z, 4)``, channels last in :data:`CHANNELS` order. With four files each must be
    3-D and named for its channel (BraTS 2023 ``-t1n``/``-t1c``/``-t2w``/``-t2f``, or the
    tokens ``t1``, ``t1ce``/``t1gd``, ``t2``, ``flair``, case-insensitive); they must share
    shape and affine (within 1e-3). Raises ``InvalidInputError`` with code
    ``mri_channel_count``, ``mri_channel_unknown``, ``mri_channel_duplicate``,
    ``mri_shape_mismatch``, ``mri_affine_mismatch`` or ``non_finite_values`` (NaN or
    infinity in the voxels), ``PayloadTooLargeError("volume_too_large")`` when the four
    headers together exceed ``max_volume_voxels``, and any :func:`read_nifti` error.
    """
    if len(files) not in (1, 4):
        raise InvalidInputError(
            f"brain MRI needs one 4-channel NIfTI file or four 3-D files, got {len(files)}",
            code="mri_channel_count",
            detail={"filenames": [name for name, _ in files]},
        )
    if len(files) == 1:
        return _from_four_channel_file(*files[0], limits)
    return _from_channel_files(files, limits)


def _from_four_channel_file(filename: str, data: bytes, limits: UploadLimits) -> ParsedVolume:
    image = read_nifti(data, filename, limits)
    if len(image.shape) != 4 or image.shape[3] != len(CHANNELS):
        raise InvalidInputError(
            f"{filename}: a single brain MRI file must have shape (X, Y, Z, 4), "
            f"got {tuple(image.shape)}",
            code="mri_channel_count",
            detail={"filename": filename, "shape": list(image.shape)},
        )
    # One channel at a time into the float32 volume the pipeline needs: the peak is the
    # result plus one channel of the file's type, not the whole file's array and copies.
    voxels = np.empty((len(CHANNELS), *image.shape[:3]), dtype=np.float32)
    for channel in range(len(CHANNELS)):
        voxels[channel] = _load_finite(image, filename, channel)
    return _volume(voxels, image, (filename,), data)


def _from_channel_files(files: list[tuple[str, bytes]], limits: UploadLimits) -> ParsedVolume:
    by_channel: dict[int, tuple[str, bytes]] = {}
    for filename, data in files:
        channel = _channel_of(filename)
        if channel in by_channel:
            raise InvalidInputError(
                f"{filename}: channel {CHANNELS[channel]} is also given by "
                f"{by_channel[channel][0]}",
                code="mri_channel_duplicate",
                detail={"filename": filename, "other_filename": by_channel[channel][0]},
            )
        by_channel[channel] = (filename, data)
    ordered = [by_channel[channel] for channel in range(len(CHANNELS))]
    images = [read_nifti(data, filename, limits) for filename, data in ordered]
    shapes = [
        _spatial_shape(image, filename)
        for image, (filename, _) in zip(images, ordered, strict=True)
    ]
    reference_name = ordered[0][0]
    for shape, (filename, _) in zip(shapes[1:], ordered[1:], strict=True):
        if shape != shapes[0]:
            raise InvalidInputError(
                f"{filename}: shape {shape} differs from {reference_name} {shapes[0]}",
                code="mri_shape_mismatch",
                detail={"filename": filename, "shape": list(shape), "expected": list(shapes[0])},
            )
    total = len(CHANNELS) * prod(shapes[0])
    if total > limits.max_volume_voxels:
        raise PayloadTooLargeError(
            f"the four channels hold {total} voxels, the limit is {limits.max_volume_voxels}",
            code="volume_too_large",
            detail={"filenames": [name for name, _ in ordered], "voxels": total},
        )
    reference_affine = _affine(images[0], reference_name)
    for image, (filename, _) in zip(images[1:], ordered[1:], strict=True):
        if not np.allclose(
            _affine(image, filename), reference_affine, rtol=0.0, atol=_AFFINE_TOLERANCE
        ):
            raise InvalidInputError(
                f"{filename}: affine differs from {reference_name} by more than "
                f"{_AFFINE_TOLERANCE}",
                code="mri_affine_mismatch",
                detail={"filename": filename, "reference_filename": reference_name},
            )
    voxels = np.empty((len(CHANNELS), *shapes[0]), dtype=np.float32)
    for channel, (image, (filename, _)) in enumerate(zip(images, ordered, strict=True)):
        voxels[channel] = _load_finite(image, filename).reshape(shapes[0])
    return _volume(
        voxels,
        images[0],
        tuple(filename for filename, _ in ordered),
        b"".join(data for _, data in ordered),
    )


def _volume(
    voxels: npt.NDArray[np.float32],
    reference: nibabel.Nifti1Image,
    filenames: tuple[str, ...],
    hashed_bytes: bytes,
) -> ParsedVolume:
    affine = _affine(reference, filenames[0]).copy()
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxels.flags.writeable = False
    affine.flags.writeable = False
    return ParsedVolume(
        data=voxels,
        affine=affine,
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        filenames=filenames,
        sha256=hashlib.sha256(hashed_bytes).hexdigest(),
    )


def _channel_of(filename: str) -> int:
    """The channel index a file name denotes; raises ``mri_channel_unknown`` otherwise."""
    name = re.split(r"[\\/]", filename)[-1].lower()
    name = name.removesuffix(".gz").removesuffix(".nii")
    tokens = re.split(r"[^a-z0-9]+", name)
    channels = {_CHANNEL_TOKENS[token] for token in tokens if token in _CHANNEL_TOKENS}
    if len(channels) != 1:
        raise InvalidInputError(
            f"{filename}: cannot tell the MRI channel from the file name; use a BraTS suffix "
            "(-t1n, -t1c, -t2w, -t2f) or t1, t1ce, t2, flair",
            code="mri_channel_unknown",
            detail={"filename": filename},
        )
    return channels.pop()


def _spatial_shape(image: nibabel.Nifti1Image, filename: str) -> tuple[int, int, int]:
    """The X, Y, Z shape of a 3-D image (trailing singleton axes allowed)."""
    shape = tuple(int(size) for size in image.shape)
    if len(shape) < 3 or any(size != 1 for size in shape[3:]):
        raise InvalidInputError(
            f"{filename}: each of four channel files must be 3-D, got shape {shape}",
            code="mri_channel_count",
            detail={"filename": filename, "shape": list(shape)},
        )
    return shape[0], shape[1], shape[2]


def _affine(image: nibabel.Nifti1Image, filename: str) -> npt.NDArray[np.float64]:
    affine = image.affine
    if affine is None:
        raise _corrupt(filename, "no affine")
    return np.asarray(affine, dtype=np.float64)


def _load_finite(
    image: nibabel.Nifti1Image, filename: str, channel: int | None = None
) -> npt.NDArray[np.float32]:
    """Read the voxels (of one ``channel`` on the last axis) as float32, scaling applied;
    reject NaN or infinity."""
    try:
        if channel is None:
            voxels = np.asarray(image.get_fdata(dtype=np.float32), dtype=np.float32)
        else:
            voxels = np.asarray(image.dataobj[..., channel], dtype=np.float32)
    except Exception as exc:  # nibabel reports unreadable data with many exception types
        raise _corrupt(filename, f"voxel data unreadable: {exc}") from exc
    if not np.isfinite(voxels).all():
        raise InvalidInputError(
            f"{filename}: voxel data contains NaN or infinite values",
            code="non_finite_values",
            detail={"filename": filename},
        )
    return voxels


def _inflate(inflater: gzip.GzipFile, size: int, filename: str) -> bytes:
    """Up to ``size`` more decompressed bytes; reaching the end verifies the CRC."""
    try:
        return inflater.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(filename, f"damaged gzip stream: {exc}") from exc


def _leading_bytes(data: bytes) -> bytes:
    """The first bytes of the (decompressed) file, enough for either header; bounded work."""
    if not data.startswith(_GZIP_MAGIC):
        return data[:_NIFTI2_HEADER_BYTES]
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, _NIFTI2_HEADER_BYTES)
    except zlib.error:
        return b""


def _image_class(head: bytes) -> type[nibabel.Nifti1Image] | None:
    """NIfTI-1 or NIfTI-2 from ``sizeof_hdr`` and magic, in either byte order; else None."""
    if len(head) < _NIFTI1_HEADER_BYTES:
        return None
    for byte_order in "<>":
        (sizeof_hdr,) = struct.unpack(f"{byte_order}i", head[:4])
        if sizeof_hdr == _NIFTI1_HEADER_BYTES and head[344:348] == _NIFTI1_MAGIC:
            return nibabel.Nifti1Image
        if sizeof_hdr == _NIFTI2_HEADER_BYTES and head[4:12] == _NIFTI2_MAGIC:
            return nibabel.Nifti2Image
    return None


def _declared_size(header: nibabel.Nifti1Header, filename: str, limits: UploadLimits) -> int:
    """Bytes the file must hold per its header; enforces the voxel limit and data type."""
    shape = tuple(int(size) for size in header.get_data_shape())  # type: ignore[no-untyped-call]
    if not shape or any(size < 1 for size in shape):
        raise _corrupt(filename, f"invalid dimensions {shape}")
    voxels = prod(shape)
    if voxels > limits.max_volume_voxels:
        raise PayloadTooLargeError(
            f"{filename}: volume of shape {shape} has {voxels} voxels, "
            f"the limit is {limits.max_volume_voxels}",
            code="volume_too_large",
            detail={"filename": filename, "shape": list(shape), "voxels": voxels},
        )
    dtype: np.dtype[np.generic] = header.get_data_dtype()  # type: ignore[no-untyped-call]
    if dtype.kind not in "iuf":
        raise UnsupportedMediaError(
            f"{filename}: NIfTI data type {dtype} is not a real-valued scalar type",
            code="unsupported_nifti_datatype",
            detail={"filename": filename, "dtype": str(dtype)},
        )
    # Memory, not only voxels: the pipeline holds float32, so the voxel limit allows
    # ``max_volume_voxels * 4`` bytes. A wider type (float64, int64) counts its real width,
    # so a float64 volume may have half the voxels.
    limit_bytes = limits.max_volume_voxels * _PIPELINE_ITEMSIZE
    if voxels * dtype.itemsize > limit_bytes:
        raise PayloadTooLargeError(
            f"{filename}: {voxels} voxels of {dtype} take {voxels * dtype.itemsize} bytes, "
            f"the limit is {limit_bytes}",
            code="volume_too_large",
            detail={"filename": filename, "dtype": str(dtype), "voxels": voxels},
        )
    vox_offset = int(header["vox_offset"])
    if vox_offset > limits.max_file_bytes:
        raise _corrupt(filename, f"vox_offset {vox_offset} is implausibly large")
    return vox_offset + voxels * dtype.itemsize


def _corrupt(filename: str, reason: str) -> InvalidInputError:
    return InvalidInputError(
        f"{filename}: corrupt NIfTI file: {reason}",
        code="corrupt_nifti",
        detail={"filename": filename},
    )
