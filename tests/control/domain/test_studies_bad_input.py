"""Bad uploads: each gets its documented status and JSON ``code`` and stores nothing at all.

"Nothing" means no Study/Series/Instance/Case/StudyLink rows, no object in the store and no
``study.ingested`` audit entry, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from control.storage import StorageUnavailableError
from tests.control.domain.test_studies import (
    UPLOAD_URL,
    app_with,
    assert_error,
    assert_nothing_stored,
    audit_actions,
    ct_variant,
    dicom_bytes,
    load_testdata,
    read_testdata,
    row_counts,
    upload,
)

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _png() -> bytes:
    """A valid 2x2 grayscale PNG."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\xff\x00\xff\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _random_bytes() -> bytes:
    return random.Random(1234).randbytes(4096)


def _text() -> bytes:
    return b"Patient: Jane Doe\nThis is a radiology report, not an image.\n" * 20


def _truncated_ct() -> bytes:
    ct = read_testdata("CT_small.dcm")
    return ct[: len(ct) // 2]


def _ct_without_pixels() -> bytes:
    ds = load_testdata("CT_small.dcm")
    del ds.PixelData
    return dicom_bytes(ds)


def _basic_text_sr() -> bytes:
    ds = pydicom.Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "12345"
    ds.ValueType = "CONTAINER"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dicom_bytes(ds)


def _ct_with_huge_rows() -> bytes:
    return ct_variant(Rows=60000)


def _ct_with_too_many_frames() -> bytes:
    return ct_variant(NumberOfFrames=100_000)


BAD_FILES: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("random_bytes", _random_bytes, 415, "not_dicom"),
    ("png", _png, 415, "not_dicom"),
    ("text", _text, 415, "not_dicom"),
    ("truncated", _truncated_ct, 400, "truncated_dicom"),
    ("no_pixel_data", _ct_without_pixels, 400, "no_pixel_data"),
    ("basic_text_sr", _basic_text_sr, 415, "unsupported_sop_class"),
    ("rows_60000", _ct_with_huge_rows, 413, "image_too_large"),
    ("too_many_frames", _ct_with_too_many_frames, 413, "too_many_frames"),
]


def _good_ct_instances() -> list[tuple[str, bytes]]:
    return [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (1, 2, 3)]


def _multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body of ``(field, filename or None, value)`` parts."""
    body = b""
    for field, filename, value in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


async def _post_raw(client: Any, headers: dict[str, str], body: bytes, content_type: str) -> Any:
    return await client.post(
        UPLOAD_URL, content=body, headers={**headers, "Content-Type": content_type}
    )


# ---------------------------------------------------------------------------------------------
# One bad file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [pytest.param(make, status, code, id=name) for name, make, status, code in BAD_FILES],
)
async def test_bad_file_is_rejected_and_nothing_is_stored(
    app, client, accounts, make, status, code
):
    response = await upload(client, accounts["pacs1"].headers, ("upload.dcm", make()))

    body = assert_error(response, status, code)
    assert body["detail"]["filename"] == "upload.dcm"
    await assert_nothing_stored(app)


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [pytest.param(make, status, code, id=name) for name, make, status, code in BAD_FILES],
)
async def test_bad_last_file_rejects_the_whole_upload(app, client, accounts, make, status, code):
    files = [*_good_ct_instances(), ("last.dcm", make())]

    response = await upload(client, accounts["pacs1"].headers, *files)

    body = assert_error(response, status, code)
    assert body["detail"]["filename"] == "last.dcm"
    await assert_nothing_stored(app)


async def test_good_upload_after_a_rejected_one_still_works(app, client, accounts):
    headers = accounts["pacs1"].headers
    rejected = await upload(client, headers, *_good_ct_instances(), ("cut.dcm", _truncated_ct()))
    assert_error(rejected, 400, "truncated_dicom")

    accepted = await upload(client, headers, *_good_ct_instances())

    assert accepted.status_code == 201, accepted.text
    assert (await row_counts(app))["instances"] == 3


# ---------------------------------------------------------------------------------------------
# Size limits from settings
# ---------------------------------------------------------------------------------------------


async def test_file_over_max_file_bytes_is_rejected(settings, accounts):
    ct = read_testdata("CT_small.dcm")
    async with app_with(settings, max_file_bytes=len(ct) - 1) as (small_app, small_client):
        response = await upload(small_client, accounts["pacs1"].headers, ("ct.dcm", ct))

        assert_error(response, 413, "file_too_large")
        await assert_nothing_stored(small_app)


async def test_request_over_max_request_bytes_is_rejected(settings, accounts):
    mr = read_testdata("MR_small.dcm")
    files = []
    for n in range(4):
        ds = load_testdata("MR_small.dcm")
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.777.{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        files.append((f"mr-{n}.dcm", dicom_bytes(ds)))
    limit = 2 * len(mr) + 1024
    async with app_with(settings, max_request_bytes=limit, max_file_bytes=limit) as (
        small_app,
        small_client,
    ):
        response = await upload(small_client, accounts["pacs1"].headers, *files)

        assert_error(response, 413, "payload_too_large")
        await assert_nothing_stored(small_app)


async def test_too_many_files_is_rejected(settings, accounts):
    async with app_with(settings, max_files_per_request=2) as (small_app, small_client):
        response = await upload(small_client, accounts["pacs1"].headers, *_good_ct_instances())

        assert_error(response, 413, "too_many_files")
        await assert_nothing_stored(small_app)


# ---------------------------------------------------------------------------------------------
# Malformed requests
# ---------------------------------------------------------------------------------------------


async def test_unknown_form_field_is_rejected(app, client, accounts):
    response = await upload(
        client,
        accounts["pacs1"].headers,
        ("ct.dcm", read_testdata("CT_small.dcm")),
        data={"patient_name": "Doe^Jane"},
    )

    body = assert_error(response, 400, "unknown_field")
    assert body["detail"]["fields"] == ["patient_name"]
    await assert_nothing_stored(app)


@pytest.mark.parametrize(
    "value", [pytest.param("x" * 65, id="too_long"), pytest.param(b"Asian", id="a_file")]
)
async def test_invalid_race_ethnicity_is_rejected(app, client, accounts, value):
    parts = [("files", "ct.dcm", read_testdata("CT_small.dcm"))]
    if isinstance(value, bytes):
        parts.append(("race_ethnicity", "race.txt", value))
    else:
        parts.append(("race_ethnicity", None, value.encode()))
    body = _multipart("b0undary", parts)

    response = await _post_raw(
        client, accounts["pacs1"].headers, body, "multipart/form-data; boundary=b0undary"
    )

    assert assert_error(response, 400)["code"] in {"invalid_field", "validation_failed"}
    await assert_nothing_stored(app)


async def test_missing_files_field_is_rejected(app, client, accounts):
    body = _multipart("b0undary", [("race_ethnicity", None, b"Asian")])

    response = await _post_raw(
        client, accounts["pacs1"].headers, body, "multipart/form-data; boundary=b0undary"
    )

    assert assert_error(response, 400)["code"] in {"validation_failed", "no_files"}
    await assert_nothing_stored(app)


async def test_files_field_with_text_instead_of_a_file_is_rejected(app, client, accounts):
    body = _multipart("b0undary", [("files", None, b"not a file")])

    response = await _post_raw(
        client, accounts["pacs1"].headers, body, "multipart/form-data; boundary=b0undary"
    )

    assert assert_error(response, 400)["code"] in {"validation_failed", "no_files"}
    await assert_nothing_stored(app)


async def test_empty_multipart_body_is_rejected(app, client, accounts):
    response = await _post_raw(
        client, accounts["pacs1"].headers, b"", "multipart/form-data; boundary=b0undary"
    )

    assert_error(response, 400)
    await assert_nothing_stored(app)


async def test_multipart_with_the_wrong_boundary_is_rejected(app, client, accounts):
    body = _multipart("realboundary", [("files", "ct.dcm", read_testdata("CT_small.dcm"))])

    response = await _post_raw(
        client, accounts["pacs1"].headers, body, "multipart/form-data; boundary=otherboundary"
    )

    assert assert_error(response, 400)["code"] in {"malformed_form", "validation_failed"}
    await assert_nothing_stored(app)


async def test_garbage_body_with_multipart_content_type_is_rejected(app, client, accounts):
    response = await _post_raw(
        client,
        accounts["pacs1"].headers,
        random.Random(5).randbytes(2048),
        "multipart/form-data; boundary=b0undary",
    )

    assert_error(response, 400, "malformed_form")
    await assert_nothing_stored(app)


async def test_multipart_without_boundary_is_rejected(app, client, accounts):
    body = _multipart("b0undary", [("files", "ct.dcm", read_testdata("CT_small.dcm"))])

    response = await _post_raw(client, accounts["pacs1"].headers, body, "multipart/form-data")

    assert_error(response, 400, "malformed_form")
    await assert_nothing_stored(app)


async def test_json_body_instead_of_multipart_is_rejected(app, client, accounts):
    response = await client.post(
        UPLOAD_URL, json={"files": ["CT_small.dcm"]}, headers=accounts["pacs1"].headers
    )

    assert 400 <= response.status_code < 500, response.text
    assert_error(response, response.status_code)
    await assert_nothing_stored(app)


async def test_upload_without_credentials_is_rejected(app, client):
    response = await upload(client, {}, ("ct.dcm", read_testdata("CT_small.dcm")))

    assert_error(response, 401)
    await assert_nothing_stored(app)


async def test_mlops_may_not_upload(app, client, accounts):
    response = await upload(
        client, accounts["mlops1"].headers, ("ct.dcm", read_testdata("CT_small.dcm"))
    )

    assert_error(response, 403)
    await assert_nothing_stored(app)


# ---------------------------------------------------------------------------------------------
# Failure while storing: the service compensates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(StorageUnavailableError("disk went away"), 503, id="storage_unavailable"),
        pytest.param(OSError("No space left on device"), 500, id="os_error"),
    ],
)
@pytest.mark.parametrize(
    "failing_write",
    [
        pytest.param(2, id="first_study"),
        pytest.param(4, id="second_study"),  # after the first study's objects were written
    ],
)
async def test_storage_failure_half_way_leaves_nothing(
    app, client, accounts, monkeypatch, failure, status, failing_write
):
    from control.storage import filesystem

    real_write = filesystem._write_temporary
    calls: list[str] = []

    def flaky_write(key: str, path: Path, data: bytes, digest: str) -> Path:
        # Objects are written study by study (three CT instances, then one MR).
        calls.append(key)
        if len(calls) >= failing_write:
            raise failure
        return real_write(key, path, data, digest)

    monkeypatch.setattr(filesystem, "_write_temporary", flaky_write)
    files = [*_good_ct_instances(), ("mr.dcm", read_testdata("MR_small.dcm"))]

    response = await upload(client, accounts["pacs1"].headers, *files)

    assert_error(response, status)
    # The other study's objects may have been written meanwhile: none of them is left.
    assert len(calls) >= failing_write
    await assert_nothing_stored(app)
    monkeypatch.undo()
    retry = await upload(client, accounts["pacs1"].headers, *files)
    assert retry.status_code == 201, retry.text
    assert len(await app.state.store.list_keys("studies/")) == 4
    assert len(await audit_actions(app, "study.ingested")) == 2


async def test_audit_failure_after_objects_were_written_leaves_nothing(
    app, client, accounts, monkeypatch
):
    from control.domain.audit import chain

    async def broken_append(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(chain, "append", broken_append)

    response = await upload(client, accounts["pacs1"].headers, *_good_ct_instances())

    assert_error(response, 500, "internal_error")
    await assert_nothing_stored(app)


# ---------------------------------------------------------------------------------------------
# Conflicts with what is already stored, and inside one request
# ---------------------------------------------------------------------------------------------


async def test_two_different_files_with_one_sop_instance_uid_are_rejected(app, client, accounts):
    first = ct_variant(instance_number=1)
    other = ct_variant(instance_number=1, InstitutionName="Elsewhere", SliceLocation=99)

    response = await upload(client, accounts["pacs1"].headers, ("a.dcm", first), ("b.dcm", other))

    assert_error(response, 400, "duplicate_instance_uid")
    await assert_nothing_stored(app)


async def test_conflicting_reupload_stores_nothing_new(app, client, accounts):
    headers = accounts["pacs1"].headers
    stored = await upload(client, headers, ("ct.dcm", read_testdata("CT_small.dcm")))
    assert stored.status_code == 201, stored.text
    counts = await row_counts(app)
    keys = await app.state.store.list_keys("")
    changed = load_testdata("CT_small.dcm")
    changed.SliceLocation = 123
    files = [*_good_ct_instances(), ("changed.dcm", dicom_bytes(changed))]

    response = await upload(client, headers, *files)

    assert_error(response, 409, "instance_conflict")
    assert await row_counts(app) == counts
    assert await app.state.store.list_keys("") == keys
    assert len(await audit_actions(app, "study.ingested")) == 1


async def test_series_of_another_study_is_rejected(app, client, accounts):
    headers = accounts["pacs1"].headers
    stored = await upload(client, headers, ("ct.dcm", read_testdata("CT_small.dcm")))
    assert stored.status_code == 201, stored.text
    counts = await row_counts(app)
    keys = await app.state.store.list_keys("")
    moved = ct_variant(instance_number=9, StudyInstanceUID="1.2.826.0.1.3680043.10.777.1000")

    response = await upload(client, headers, ("moved.dcm", moved))

    assert_error(response, 409, "series_study_mismatch")
    assert await row_counts(app) == counts
    assert await app.state.store.list_keys("") == keys
    assert len(await audit_actions(app, "study.ingested")) == 1
