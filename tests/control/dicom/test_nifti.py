"""Tests for control.dicom.nifti: NIfTI parsing and four-channel brain MRI assembly."""

from __future__ import annotations

import gzip
import hashlib
import random

import nibabel
import numpy as np
import numpy.typing as npt
import pytest
from pydicom.data import get_testdata_file

from control.dicom.nifti import CHANNELS, assemble_mri_volume, looks_like_nifti, read_nifti
from control.dicom.reader import UploadLimits
from control.errors import (
    InvalidInputError,
    MedVisionError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)

SHAPE = (8, 8, 8)
AFFINE = np.diag([1.0, 1.2, 2.5, 1.0])
AFFINE[:3, 3] = [-4.0, -5.0, -6.0]
LIMITS = UploadLimits(
    max_file_bytes=16 * 1024 * 1024,
    max_image_dimension=16_384,
    max_image_pixels=16_384 * 16_384,
    max_frames=4096,
    max_volume_voxels=4 * 8 * 8 * 8,
)
BRATS_SUFFIXES = ("t1n", "t1c", "t2w", "t2f")  # in CHANNELS order


def _voxels(seed: int, shape: tuple[int, ...] = SHAPE) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _nifti(
    voxels: npt.NDArray[np.generic],
    affine: npt.NDArray[np.float64] = AFFINE,
    *,
    compress: bool = False,
    version: int = 1,
) -> bytes:
    image_class = nibabel.Nifti2Image if version == 2 else nibabel.Nifti1Image
    data = image_class(voxels, affine).to_bytes()
    return gzip.compress(data) if compress else data


def _header_only(shape: tuple[int, ...], *, compress: bool = False) -> bytes:
    """A valid NIfTI-1 header declaring ``shape`` float32 voxels, followed by almost no data."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    data = header.binaryblock + bytes(4) + bytes(64)
    return gzip.compress(data) if compress else data


def _brats_files(*, compress: bool = False) -> list[tuple[str, bytes]]:
    suffix = ".nii.gz" if compress else ".nii"
    return [
        (f"BraTS-GLI-00001-000-{tag}{suffix}", _nifti(_voxels(index), compress=compress))
        for index, tag in enumerate(BRATS_SUFFIXES)
    ]


def _expect_read(
    error: type[MedVisionError], code: str, data: bytes, limits: UploadLimits = LIMITS
) -> MedVisionError:
    with pytest.raises(error) as caught:
        read_nifti(data, "scan.nii", limits)
    assert caught.value.code == code, caught.value.message
    assert caught.value.detail["filename"] == "scan.nii"
    return caught.value


def _expect_assemble(
    error: type[MedVisionError],
    code: str,
    files: list[tuple[str, bytes]],
    limits: UploadLimits = LIMITS,
) -> MedVisionError:
    with pytest.raises(error) as caught:
        assemble_mri_volume(files, limits)
    assert caught.value.code == code, caught.value.message
    return caught.value


# --- format detection -------------------------------------------------------------------


@pytest.mark.parametrize(("compress", "version"), [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_looks_like_nifti(compress: bool, version: int) -> None:
    data = _nifti(_voxels(0), compress=compress, version=version)
    assert looks_like_nifti(data, "anything.bin")


def test_big_endian_nifti_is_recognised() -> None:
    header = nibabel.Nifti1Header(endianness=">")
    data = nibabel.Nifti1Image(_voxels(0), AFFINE, header=header).to_bytes()
    assert data[:4] == b"\x00\x00\x01\x5c"
    assert looks_like_nifti(data, "scan.nii")
    np.testing.assert_array_equal(read_nifti(data, "scan.nii", LIMITS).get_fdata(), _voxels(0))


def test_detection_is_by_content_not_name() -> None:
    dicom_path = get_testdata_file("CT_small.dcm")
    assert dicom_path is not None
    with open(dicom_path, "rb") as handle:
        dicom = handle.read()
    assert not looks_like_nifti(dicom, "scan.nii")
    assert not looks_like_nifti(random.Random(7).randbytes(1024), "scan.nii.gz")
    assert not looks_like_nifti(gzip.compress(b"not a header" * 100), "scan.nii.gz")
    assert not looks_like_nifti(b"", "scan.nii")


# --- read_nifti -------------------------------------------------------------------------


@pytest.mark.parametrize(("compress", "version"), [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_read_nifti(compress: bool, version: int) -> None:
    voxels = _voxels(3)
    image = read_nifti(_nifti(voxels, compress=compress, version=version), "scan.nii", LIMITS)
    assert isinstance(image, nibabel.Nifti1Image)
    assert image.shape == SHAPE
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), voxels)
    np.testing.assert_allclose(image.affine, AFFINE)


@pytest.mark.parametrize(
    "data",
    [
        random.Random(1).randbytes(2048),
        b"\x89PNG\r\n\x1a\n" + bytes(600),
        gzip.compress(b"hello world\n" * 100),
        b"",
    ],
    ids=["random", "png", "gzip-text", "empty"],
)
def test_not_nifti(data: bytes) -> None:
    _expect_read(UnsupportedMediaError, "not_nifti", data)


def test_truncated_gzip_is_corrupt() -> None:
    data = _nifti(_voxels(0), compress=True)
    _expect_read(InvalidInputError, "corrupt_nifti", data[: len(data) - 200])


def test_damaged_gzip_is_corrupt() -> None:
    data = bytearray(_nifti(_voxels(0), compress=True))
    data[-8:-4] = bytes(a ^ 0xFF for a in data[-8:-4])  # the member's CRC-32
    _expect_read(InvalidInputError, "corrupt_nifti", bytes(data))


def test_truncated_voxel_data_is_corrupt() -> None:
    data = _nifti(_voxels(0))
    _expect_read(InvalidInputError, "corrupt_nifti", data[:-100])


def test_invalid_header_is_corrupt() -> None:
    data = bytearray(_nifti(_voxels(0)))
    data[40:42] = (9).to_bytes(2, "little")  # dim[0] above the NIfTI maximum of 7
    _expect_read(InvalidInputError, "corrupt_nifti", bytes(data))


@pytest.mark.parametrize("compress", [False, True])
def test_too_large_by_header(compress: bool) -> None:
    data = _header_only((1000, 1000, 1000), compress=compress)
    error = _expect_read(PayloadTooLargeError, "volume_too_large", data)
    assert error.detail["voxels"] == 10**9


def test_gzip_bomb_is_stopped_by_the_header() -> None:
    header = nibabel.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    bomb = gzip.compress(header.binaryblock + bytes(4) + bytes(64 * 1024 * 1024))
    assert len(bomb) < LIMITS.max_file_bytes
    _expect_read(InvalidInputError, "corrupt_nifti", bomb)


def test_file_too_large() -> None:
    data = _nifti(_voxels(0))
    limits = UploadLimits(
        max_file_bytes=len(data) - 1,
        max_image_dimension=LIMITS.max_image_dimension,
        max_image_pixels=LIMITS.max_image_pixels,
        max_frames=LIMITS.max_frames,
        max_volume_voxels=LIMITS.max_volume_voxels,
    )
    _expect_read(PayloadTooLargeError, "file_too_large", data, limits)


def test_complex_voxels_are_unsupported() -> None:
    data = _nifti(_voxels(0).astype(np.complex64))
    _expect_read(UnsupportedMediaError, "unsupported_nifti_datatype", data)


# --- assemble_mri_volume ----------------------------------------------------------------


def test_one_four_channel_file() -> None:
    voxels = _voxels(5, (*SHAPE, 4))
    data = _nifti(voxels)
    volume = assemble_mri_volume([("case-0001.nii", data)], LIMITS)

    assert volume.data.shape == (4, *SHAPE)
    assert volume.data.dtype == np.float32
    for channel in range(len(CHANNELS)):
        np.testing.assert_array_equal(volume.data[channel], voxels[..., channel])
    np.testing.assert_allclose(volume.affine, AFFINE)
    assert volume.spacing_mm == pytest.approx((1.0, 1.2, 2.5))
    assert volume.filenames == ("case-0001.nii",)
    assert volume.sha256 == hashlib.sha256(data).hexdigest()
    assert not volume.data.flags.writeable
    assert not volume.affine.flags.writeable


@pytest.mark.parametrize("compress", [False, True])
def test_four_brats_files_in_any_order(compress: bool) -> None:
    files = _brats_files(compress=compress)
    shuffled = [files[2], files[0], files[3], files[1]]
    volume = assemble_mri_volume(shuffled, LIMITS)

    assert volume.data.shape == (4, *SHAPE)
    for channel in range(len(CHANNELS)):
        np.testing.assert_array_equal(volume.data[channel], _voxels(channel))
    assert volume.filenames == tuple(name for name, _ in files)
    assert volume.sha256 == hashlib.sha256(b"".join(data for _, data in files)).hexdigest()
    assert volume.spacing_mm == pytest.approx((1.0, 1.2, 2.5))


def test_legacy_channel_names_case_insensitive() -> None:
    names = ["uploads/Case_7_T1.nii", "uploads/Case_7_t1CE.nii.gz", "Case_7_T2.nii", "FLAIR.nii"]
    files = [
        (name, _nifti(_voxels(index), compress=name.endswith(".gz")))
        for index, name in enumerate(names)
    ]
    volume = assemble_mri_volume(list(reversed(files)), LIMITS)
    assert volume.filenames == tuple(names)
    np.testing.assert_array_equal(volume.data[1], _voxels(1))


def test_singleton_fourth_axis_counts_as_3d() -> None:
    files = [
        (name, _nifti(_voxels(index).reshape(*SHAPE, 1)))
        for index, (name, _) in enumerate(_brats_files())
    ]
    volume = assemble_mri_volume(files, LIMITS)
    assert volume.data.shape == (4, *SHAPE)


@pytest.mark.parametrize("count", [0, 2, 3, 5])
def test_wrong_file_count(count: int) -> None:
    files = (_brats_files() * 2)[:count]
    _expect_assemble(InvalidInputError, "mri_channel_count", files)


def test_single_3d_file_is_not_enough() -> None:
    error = _expect_assemble(
        InvalidInputError, "mri_channel_count", [("t1.nii", _nifti(_voxels(0)))]
    )
    assert error.detail["filename"] == "t1.nii"


def test_four_files_must_each_be_3d() -> None:
    files = _brats_files()
    files[3] = (files[3][0], _nifti(_voxels(3, (*SHAPE, 4))))
    error = _expect_assemble(InvalidInputError, "mri_channel_count", files)
    assert error.detail["filename"] == files[3][0]


@pytest.mark.parametrize("name", ["scan.nii", "t1_t2.nii", "BraTS-GLI-00001-000-seg.nii.gz"])
def test_unknown_channel(name: str) -> None:
    files = _brats_files()
    files[1] = (name, files[1][1])
    error = _expect_assemble(InvalidInputError, "mri_channel_unknown", files)
    assert error.detail["filename"] == name


def test_duplicate_channel() -> None:
    files = _brats_files()
    files[3] = ("other-t1n.nii", files[3][1])
    error = _expect_assemble(InvalidInputError, "mri_channel_duplicate", files)
    assert error.detail["filename"] == "other-t1n.nii"
    assert error.detail["other_filename"] == files[0][0]


def test_shape_mismatch() -> None:
    files = _brats_files()
    files[2] = (files[2][0], _nifti(_voxels(2, (8, 8, 9))))
    error = _expect_assemble(InvalidInputError, "mri_shape_mismatch", files)
    assert error.detail["filename"] == files[2][0]


def test_affine_mismatch() -> None:
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01
    files = _brats_files()
    files[1] = (files[1][0], _nifti(_voxels(1), shifted))
    error = _expect_assemble(InvalidInputError, "mri_affine_mismatch", files)
    assert error.detail["filename"] == files[1][0]


def test_affine_within_tolerance_is_accepted() -> None:
    nudged = AFFINE.copy()
    nudged[0, 3] += 1e-4
    files = _brats_files()
    files[1] = (files[1][0], _nifti(_voxels(1), nudged))
    assert assemble_mri_volume(files, LIMITS).data.shape == (4, *SHAPE)


def test_corrupt_gzip_channel_names_the_file() -> None:
    files = _brats_files(compress=True)
    name, data = files[2]
    files[2] = (name, data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as caught:
        assemble_mri_volume(files, LIMITS)
    assert caught.value.code == "corrupt_nifti"
    assert caught.value.detail["filename"] == name


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(bad_value: float) -> None:
    voxels = _voxels(3)
    voxels[1, 2, 3] = bad_value
    files = _brats_files()
    files[3] = (files[3][0], _nifti(voxels))
    error = _expect_assemble(InvalidInputError, "non_finite_values", files)
    assert error.detail["filename"] == files[3][0]


def test_non_finite_values_in_four_channel_file() -> None:
    voxels = _voxels(5, (*SHAPE, 4))
    voxels[0, 0, 0, 2] = np.nan
    error = _expect_assemble(
        InvalidInputError, "non_finite_values", [("case.nii.gz", _nifti(voxels, compress=True))]
    )
    assert error.detail["filename"] == "case.nii.gz"


def test_channel_file_too_large_by_header() -> None:
    files = _brats_files()
    files[0] = (files[0][0], _header_only((64, 64, 64)))
    error = _expect_assemble(PayloadTooLargeError, "volume_too_large", files)
    assert error.detail["filename"] == files[0][0]


def test_four_channels_together_too_large() -> None:
    limits = UploadLimits(
        max_file_bytes=LIMITS.max_file_bytes,
        max_image_dimension=LIMITS.max_image_dimension,
        max_image_pixels=LIMITS.max_image_pixels,
        max_frames=LIMITS.max_frames,
        max_volume_voxels=3 * 8 * 8 * 8,
    )
    error = _expect_assemble(PayloadTooLargeError, "volume_too_large", _brats_files(), limits)
    assert len(error.detail["filenames"]) == 4
