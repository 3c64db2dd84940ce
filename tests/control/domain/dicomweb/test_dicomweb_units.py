"""Pure parts of DICOMweb: multipart reading, content negotiation, DICOM JSON, query parsing,
transcoding and frames (no database, no server)."""

from __future__ import annotations

import threading
from io import BytesIO

import anyio.to_thread
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from control.domain.dicomweb import media, query, wado
from control.domain.dicomweb.json_model import element, resolve_tag
from control.domain.dicomweb.multipart import Part, PartLimits, RelatedReader, read_parts
from control.domain.dicomweb.stow import FailureReason, failure_reason
from control.errors import (
    ConflictError,
    InvalidInputError,
    MedVisionError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from tests.control.domain.dicomweb.helpers import multipart, pydicom_file

DICOM_PARTS = 'multipart/related; type="application/dicom"'
LIMITS = PartLimits(max_parts=10, max_part_bytes=1000)


def _read(body: bytes, chunk: int, limits: PartLimits = LIMITS) -> list[bytes]:
    """The parts' contents; checks that ``feed`` handed out each part once, in order."""
    reader = RelatedReader(b"test-boundary-1234", limits)
    handed_out = []
    for start in range(0, len(body), chunk):
        handed_out += reader.feed(body[start : start + chunk])
    parts = reader.finish()
    assert handed_out == parts
    return [part.content for part in parts]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100_000])
def test_reader_splits_parts_whatever_the_chunking(chunk: int) -> None:
    parts = [b"first", b"", b"\r\n--test-boundary-123 almost a delimiter\r\n", bytes(range(256))]
    body = b"preamble to ignore\r\n" + multipart(parts) + b"epilogue"
    assert _read(body, chunk) == parts


async def _after_part_one(body: bytes, first_done: threading.Event):
    """``body`` in two chunks: up to the second part's content, and the rest once part 1
    was processed (waited for in a thread, so the event loop can hand part 1 on)."""
    cut = body.index(b"second")
    yield body[:cut]
    assert await anyio.to_thread.run_sync(first_done.wait, 10), "part 1 was not processed"
    yield body[cut:]


async def test_parts_are_processed_while_the_body_arrives() -> None:
    """The first part is processed before the last byte of the body has been received."""
    body = multipart([b"first", b"second"])
    first_done = threading.Event()

    def process(index: int, part: Part) -> tuple[int, bytes]:
        if index == 0:
            first_done.set()
        return index, part.content

    chunks = _after_part_one(body, first_done)
    results = await read_parts(chunks, "test-boundary-1234", LIMITS, process)
    assert results == [(0, b"first"), (1, b"second")]


async def test_processed_parts_are_dropped_when_the_body_fails() -> None:
    body = multipart([b"first", b"second"])[:-10]  # no closing delimiter
    first_done = threading.Event()

    chunks = _after_part_one(body, first_done)
    with pytest.raises(InvalidInputError) as caught:
        await read_parts(chunks, "test-boundary-1234", LIMITS, lambda *_: first_done.set())
    assert caught.value.code == "malformed_multipart"


def test_reader_keeps_part_headers() -> None:
    reader = RelatedReader(b"test-boundary-1234", LIMITS)
    reader.feed(multipart([b"x"], part_type="application/dicom; transfer-syntax=1.2"))
    (part,) = reader.finish()
    assert part.content_type == "application/dicom"
    assert part.headers["content-type"].endswith("1.2")


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (b"", InvalidInputError, "malformed_multipart"),
        (b"--test-boundary-1234--\r\n", InvalidInputError, "no_parts"),
        (multipart([b"x"])[:-4], InvalidInputError, "malformed_multipart"),
        (
            b"--test-boundary-1234junk\r\n\r\nx\r\n--test-boundary-1234--",
            InvalidInputError,
            "malformed_multipart",
        ),
        (multipart([b"x" * 1001]), PayloadTooLargeError, "part_too_large"),
        (multipart([b"x"] * 11), PayloadTooLargeError, "too_many_parts"),
        (
            b"--test-boundary-1234\r\n" + b"X-Long: " + b"a" * 9000,
            InvalidInputError,
            "malformed_multipart",
        ),
    ],
)
def test_reader_refuses_hostile_bodies(body: bytes, error: type[MedVisionError], code: str) -> None:
    with pytest.raises(error) as raised:
        _read(body, 50)
    assert raised.value.code == code


def test_an_oversized_part_is_refused_before_the_body_ends() -> None:
    reader = RelatedReader(b"test-boundary-1234", LIMITS)
    reader.feed(b"--test-boundary-1234\r\n\r\n")
    with pytest.raises(PayloadTooLargeError):
        for _ in range(100):
            reader.feed(b"y" * 100)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, None),
        ("*/*", None),
        ('multipart/related; type="application/dicom"', None),
        ('multipart/related; type="application/dicom"; transfer-syntax=*', None),
        (
            f"{DICOM_PARTS}; transfer-syntax={ExplicitVRLittleEndian}",
            ExplicitVRLittleEndian,
        ),
        ('image/png, multipart/related; type="application/dicom"', None),
    ],
)
def test_instance_negotiation(accept: str | None, expected: str | None) -> None:
    assert media.negotiate_instances(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
        "application/dicom+json",
        'multipart/related; type="application/dicom"; q=0',
    ],
)
def test_instance_negotiation_refuses(accept: str) -> None:
    with pytest.raises(media.NotAcceptableError) as raised:
        media.negotiate_instances(accept)
    assert raised.value.status_code == 406 and raised.value.code == "not_acceptable"


def test_other_negotiations() -> None:
    assert media.negotiate_rendered(None) == media.JPEG
    assert media.negotiate_rendered("image/png;q=0.9, image/jpeg;q=0.5") == media.PNG
    media.negotiate_frames('multipart/related; type="application/octet-stream"; transfer-syntax=*')
    media.negotiate_metadata("application/json")
    for call, accept in (
        (media.negotiate_rendered, "application/dicom"),
        (media.negotiate_frames, 'multipart/related; type="image/jls"'),
        (media.negotiate_metadata, "application/dicom+xml"),
    ):
        with pytest.raises(media.NotAcceptableError):
            call(accept)


def test_stow_boundary() -> None:
    assert (
        media.stow_boundary('Multipart/Related; type="application/dicom"; boundary="a b"') == "a b"
    )
    assert media.stow_boundary("multipart/related; boundary=xyz") == "xyz"
    with pytest.raises(UnsupportedMediaError):
        media.stow_boundary(None)
    with pytest.raises(InvalidInputError):
        media.stow_boundary('multipart/related; type="application/dicom"; boundary=' + "x" * 201)


def test_dicom_json_elements() -> None:
    assert element(resolve_tag("PatientName"), "ANON-1") == {
        "vr": "PN",
        "Value": [{"Alphabetic": "ANON-1"}],
    }
    assert element(resolve_tag("00201208"), "3") == {"vr": "IS", "Value": [3]}
    assert element(resolve_tag("AccessionNumber")) == {"vr": "SH"}
    assert element(resolve_tag("Rows"), 5) == {"vr": "US", "Value": [5]}
    with pytest.raises(InvalidInputError):
        resolve_tag("0020000")


def test_query_parsing() -> None:
    parsed = query.parse_query(
        [
            ("0020000D", "1.2,1.3"),
            ("limit", "5"),
            ("includefield", "StudyDescription,00081030"),
            ("includefield", "all"),
            ("fuzzymatching", "true"),
            ("StudyDescription", "x"),
        ],
        "study",
    )
    assert parsed.matches == {0x0020000D: "1.2,1.3"}
    assert (parsed.limit, parsed.offset, parsed.default_limit, parsed.include_all) == (
        5,
        0,
        False,
        True,
    )
    assert parsed.include == {0x00081030}
    assert parsed.ignored == ("StudyDescription",)
    with pytest.raises(InvalidInputError) as twice:
        query.parse_query([("StudyDate", "20200101"), ("00080020", "20200102")], "study")
    assert twice.value.code == "duplicate_attribute"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UnsupportedMediaError("x", code="not_dicom"), FailureReason.CANNOT_UNDERSTAND),
        (InvalidInputError("x", code="truncated_dicom"), FailureReason.CANNOT_UNDERSTAND),
        (InvalidInputError("x", code="missing_attribute"), FailureReason.DATA_SET_DOES_NOT_MATCH),
        (
            InvalidInputError("x", code="unsupported_sop_class"),
            FailureReason.SOP_CLASS_NOT_SUPPORTED,
        ),
        (PayloadTooLargeError("x", code="image_too_large"), FailureReason.OUT_OF_RESOURCES),
        (ConflictError("x", code="instance_conflict"), FailureReason.DUPLICATE_SOP_INSTANCE),
        (MedVisionError("x", code="storage_failed"), FailureReason.PROCESSING_FAILURE),
    ],
)
def test_failure_reasons(error: MedVisionError, reason: int) -> None:
    assert failure_reason(error) == reason


def test_compressed_instances_are_reencoded_in_explicit_little_endian() -> None:
    rle = pydicom_file("MR_small_RLE.dcm")
    converted = pydicom.dcmread(BytesIO(wado.to_explicit_little_endian(rle)))
    assert converted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    reference = pydicom.dcmread(BytesIO(pydicom_file("MR_small.dcm")))
    np.testing.assert_array_equal(converted.pixel_array, reference.pixel_array)
    plain = pydicom_file("CT_small.dcm")
    assert wado.to_explicit_little_endian(plain) is plain


def test_frames_of_a_multiframe_instance() -> None:
    payload = pydicom_file("rtdose_rle.dcm")  # 15 frames, 32-bit, RLE: decoded
    ds = pydicom.dcmread(BytesIO(payload))
    second, last = wado.frame_bytes(payload, [2, 15])
    assert second == ds.pixel_array[1].astype("<u4").tobytes()
    assert last == ds.pixel_array[14].astype("<u4").tobytes()
    with pytest.raises(MedVisionError) as past:
        wado.frame_bytes(payload, [16])
    assert (past.value.status_code, past.value.code) == (404, "frame_not_found")


@pytest.mark.parametrize("text", ["", "0", "1,", "a", "1;2", ",".join(["1"] * 1025)])
def test_bad_frame_lists(text: str) -> None:
    with pytest.raises(InvalidInputError):
        wado.parse_frame_list(text)


@pytest.mark.parametrize(
    ("window", "viewport", "quality", "code"),
    [
        ("1", None, None, "invalid_window"),
        ("1,nan", None, None, "invalid_window"),
        ("1,2,sigmoid", None, None, "unsupported_window_function"),
        (None, "0,10", None, "invalid_viewport"),
        (None, "10,10,0,0,5,5", None, "invalid_viewport"),
        (None, None, "101", "invalid_quality"),
    ],
)
def test_bad_render_options(
    window: str | None, viewport: str | None, quality: str | None, code: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        wado.parse_render_options(window, viewport, quality)
    assert raised.value.code == code
