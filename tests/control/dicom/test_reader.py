"""Tests for control.dicom.reader: DICOM upload parsing and validation."""

from __future__ import annotations

import hashlib
import random
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import MPEG2MPML

from control.config import Settings
from control.dicom import reader
from control.dicom.reader import (
    SUPPORTED_SOP_CLASSES,
    ParsedDicom,
    UploadLimits,
    looks_like_dicom,
    read_dicom,
)
from control.errors import (
    InvalidInputError,
    MedVisionError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)

LIMITS = UploadLimits(
    max_file_bytes=64 * 1024 * 1024,
    max_image_dimension=16_384,
    max_image_pixels=16_384 * 16_384,
    max_frames=4096,
    max_volume_voxels=4 * 512**3,
)

# (file, transfer syntax it exercises); every one ships inside the pydicom wheel.
VALID_FILES = [
    ("CT_small.dcm", "1.2.840.10008.1.2.1"),  # explicit VR little endian, CT
    ("MR_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),  # J2K, Secondary Capture
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),  # JPEG baseline
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70"),  # JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE, decoded by pydicom itself
    ("SC_rgb_rle_2frame.dcm", "1.2.840.10008.1.2.5"),  # multi-frame
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),  # deflated
]


def _path(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return Path(path)


def _raw(name: str) -> bytes:
    return _path(name).read_bytes()


def _dataset(name: str) -> pydicom.FileDataset:
    return pydicom.dcmread(_path(name))


def _to_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _expect(
    error: type[MedVisionError], code: str, data: bytes, limits: UploadLimits = LIMITS
) -> MedVisionError:
    with pytest.raises(error) as caught:
        read_dicom(data, "upload.dcm", limits)
    assert caught.value.code == code, caught.value.message
    assert caught.value.detail["filename"] == "upload.dcm"
    return caught.value


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if read_dicom reaches pixel decoding."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pixel data was decoded before the header checks failed")

    monkeypatch.setattr(reader, "pixel_array", forbidden)


def test_limits_from_settings() -> None:
    settings = Settings(max_file_bytes=2048, max_frames=7)
    limits = UploadLimits.from_settings(settings)
    assert limits.max_file_bytes == 2048
    assert limits.max_frames == 7
    assert limits.max_image_dimension == settings.max_image_dimension
    assert limits.max_image_pixels == settings.max_image_pixels
    assert limits.max_volume_voxels == settings.max_volume_voxels


@pytest.mark.parametrize(("name", "transfer_syntax"), VALID_FILES)
def test_valid_files_parse(name: str, transfer_syntax: str) -> None:
    data = _raw(name)
    original = bytes(data)
    parsed = read_dicom(data, name, LIMITS)

    assert isinstance(parsed, ParsedDicom)
    assert parsed.filename == name
    assert parsed.sha256 == hashlib.sha256(original).hexdigest()
    assert data == original
    assert parsed.dataset.file_meta.TransferSyntaxUID == transfer_syntax
    assert parsed.dataset.SOPClassUID in SUPPORTED_SOP_CLASSES
    # Pixel data stays exactly as stored and nothing decoded is cached on the dataset.
    assert parsed.dataset.PixelData == _dataset(name).PixelData
    assert parsed.dataset._pixel_array is None


def test_decoded_pixels_match_pydicom() -> None:
    parsed = read_dicom(_raw("MR_small_RLE.dcm"), "rle.dcm", LIMITS)
    reference = _dataset("MR_small.dcm").pixel_array
    np.testing.assert_array_equal(parsed.dataset.pixel_array, reference)


def test_dataset_without_file_meta_is_read() -> None:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, _dataset("CT_small.dcm"))
    data = buffer.getvalue()

    assert looks_like_dicom(data)
    parsed = read_dicom(data, "bare.dcm", LIMITS)
    assert parsed.dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert parsed.dataset.Rows == 128


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "rtplan.dcm"])
def test_looks_like_dicom_accepts_part10(name: str) -> None:
    assert looks_like_dicom(_raw(name))


NOT_DICOM = {
    "random": random.Random(1234).randbytes(4096),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
    "text": b"patient,finding\nanon,normal\n" * 40,
    "empty": b"",
    "gzip": b"\x1f\x8b\x08\x00" + bytes(300),
}


@pytest.mark.parametrize("data", NOT_DICOM.values(), ids=NOT_DICOM.keys())
def test_not_dicom(data: bytes) -> None:
    assert not looks_like_dicom(data)
    _expect(UnsupportedMediaError, "not_dicom", data)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_file_cut_in_half_is_truncated(name: str) -> None:
    data = _raw(name)
    _expect(InvalidInputError, "truncated_dicom", data[: len(data) // 2])


def test_file_cut_inside_encapsulated_pixel_data_is_truncated() -> None:
    data = _raw("JPEG2000.dcm")
    pixel_data_tag = data.rindex(b"\xe0\x7f\x10\x00")
    cut = (pixel_data_tag + len(data)) // 2
    _expect(InvalidInputError, "truncated_dicom", data[:cut])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_no_cut_of_a_file_is_accepted(name: str) -> None:
    """Every cut before the end of the pixel data is rejected.

    A cut exactly between two header elements reads as a shorter, complete data set, so it
    is rejected for what is then missing; every other cut is reported as truncated. (Only
    trailing padding after the pixel data, as in MR_small_RLE.dcm, may be cut off.)
    """
    data = _raw(name)
    end = len(data)
    trailing_padding = _dataset(name).get("DataSetTrailingPadding")
    if trailing_padding is not None:
        end -= 12 + len(trailing_padding)  # explicit VR OB header is 12 bytes
    codes = set()
    for cut in range(end):
        with pytest.raises(MedVisionError) as caught:
            read_dicom(data[:cut], name, LIMITS)
        codes.add(caught.value.code)
    assert codes <= {"not_dicom", "truncated_dicom", "no_pixel_data", "missing_attribute"}


def test_file_cut_inside_an_element_header_is_truncated() -> None:
    data = _raw("CT_small.dcm")
    pixel_data_tag = data.rindex(b"\xe0\x7f\x10\x00")
    _expect(InvalidInputError, "truncated_dicom", data[: pixel_data_tag + 5])


def test_bundled_truncated_file() -> None:
    _expect(InvalidInputError, "truncated_dicom", _raw("MR_truncated.dcm"))


def test_pixel_data_shorter_than_the_image_header() -> None:
    dataset = _dataset("CT_small.dcm")
    dataset.PixelData = dataset.PixelData[:-2048]
    error = _expect(InvalidInputError, "truncated_dicom", _to_bytes(dataset))
    assert "PixelData" in error.message


def test_no_pixel_data() -> None:
    dataset = _dataset("CT_small.dcm")
    del dataset.PixelData
    _expect(InvalidInputError, "no_pixel_data", _to_bytes(dataset))


@pytest.mark.parametrize("name", ["reportsi.dcm", "rtplan.dcm", "examples_palette.dcm"])
def test_unsupported_sop_class(name: str) -> None:
    error = _expect(UnsupportedMediaError, "unsupported_sop_class", _raw(name))
    assert error.detail["sop_class_uid"] == str(_dataset(name).SOPClassUID)


def test_basic_text_sr_is_unsupported() -> None:
    assert _dataset("reportsi.dcm").SOPClassUID.name == "Basic Text SR Storage"
    _expect(UnsupportedMediaError, "unsupported_sop_class", _raw("reportsi.dcm"))


@pytest.mark.parametrize(
    "keyword",
    [
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "Rows",
        "Columns",
        "BitsAllocated",
    ],
)
def test_missing_attribute(keyword: str) -> None:
    dataset = _dataset("CT_small.dcm")
    delattr(dataset, keyword)
    error = _expect(InvalidInputError, "missing_attribute", _to_bytes(dataset))
    assert error.detail["attributes"] == [keyword]


def test_zero_rows_is_invalid(no_decode: None) -> None:
    dataset = _dataset("CT_small.dcm")
    dataset.Rows = 0
    _expect(InvalidInputError, "invalid_attribute", _to_bytes(dataset))


def test_huge_rows_fail_before_decoding(no_decode: None) -> None:
    dataset = _dataset("CT_small.dcm")
    dataset.Rows = 60000
    error = _expect(PayloadTooLargeError, "image_too_large", _to_bytes(dataset))
    assert error.status_code == 413


def test_huge_compressed_image_fails_before_decoding(no_decode: None) -> None:
    dataset = _dataset("JPEG2000.dcm")
    dataset.Columns = 60000
    _expect(PayloadTooLargeError, "image_too_large", _to_bytes(dataset))


def test_pixel_count_limit(no_decode: None) -> None:
    limits = UploadLimits(
        max_file_bytes=LIMITS.max_file_bytes,
        max_image_dimension=1024,
        max_image_pixels=128 * 127,
        max_frames=1,
        max_volume_voxels=LIMITS.max_volume_voxels,
    )
    _expect(PayloadTooLargeError, "image_too_large", _raw("CT_small.dcm"), limits)


def test_too_many_frames_fail_before_decoding(no_decode: None) -> None:
    dataset = _dataset("JPEG2000.dcm")
    dataset.NumberOfFrames = 10**9
    error = _expect(PayloadTooLargeError, "too_many_frames", _to_bytes(dataset))
    assert error.detail["frames"] == 10**9


def test_file_too_large(no_decode: None) -> None:
    data = _raw("CT_small.dcm")
    limits = UploadLimits(
        max_file_bytes=len(data) - 1,
        max_image_dimension=LIMITS.max_image_dimension,
        max_image_pixels=LIMITS.max_image_pixels,
        max_frames=LIMITS.max_frames,
        max_volume_voxels=LIMITS.max_volume_voxels,
    )
    _expect(PayloadTooLargeError, "file_too_large", data, limits)


def test_deflated_data_set_is_bounded_by_the_file_limit(no_decode: None) -> None:
    data = _raw("image_dfl.dcm")
    limits = UploadLimits(
        max_file_bytes=len(data) + 16,
        max_image_dimension=LIMITS.max_image_dimension,
        max_image_pixels=LIMITS.max_image_pixels,
        max_frames=LIMITS.max_frames,
        max_volume_voxels=LIMITS.max_volume_voxels,
    )
    _expect(PayloadTooLargeError, "file_too_large", data, limits)


def test_unsupported_transfer_syntax(no_decode: None) -> None:
    dataset = _dataset("JPEG2000.dcm")
    dataset.file_meta.TransferSyntaxUID = MPEG2MPML
    error = _expect(UnsupportedMediaError, "unsupported_transfer_syntax", _to_bytes(dataset))
    assert error.detail["transfer_syntax_uid"] == MPEG2MPML


def test_corrupt_codestream_fails_decoding() -> None:
    data = bytearray(_raw("JPEG2000.dcm"))
    start = data.index(b"\xff\x4f\xff\x51")  # J2K SOC and SIZ markers
    data[start : start + 64] = bytes(64)
    _expect(InvalidInputError, "pixel_decode_failed", bytes(data))
