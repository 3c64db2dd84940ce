"""Hostile input that used to give 500 answers 4xx with a code (issue #11, item 14).

Each test runs on SQLite and on PostgreSQL: NUL bytes and over-long values fail only on
PostgreSQL when nothing stops them before the database.
"""

from __future__ import annotations

import json
import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.control.domain.test_studies import (
    assert_error,
    assert_nothing_stored,
    dicom_bytes,
    load_testdata,
    upload,
)


def _tag(group: int, element: int) -> bytes:
    return struct.pack("<HH", group, element)


def _nested_sequence_ct(depth: int) -> bytes:
    """CT_small.dcm (explicit VR little endian) with a ContentSequence nested ``depth`` deep.

    Written by hand with undefined lengths: pydicom's own writer recurses per level.
    """
    ds = load_testdata("CT_small.dcm")
    marker = Dataset()
    marker.CodeValue = "MARKER"
    ds.ContentSequence = Sequence([marker])
    data = dicom_bytes(ds)
    undefined = b"\xff\xff\xff\xff"
    sequence = _tag(0x0040, 0xA730) + b"SQ\0\0" + undefined
    item, item_end = _tag(0xFFFE, 0xE000) + undefined, _tag(0xFFFE, 0xE00D) + b"\0" * 4
    sequence_end = _tag(0xFFFE, 0xE0DD) + b"\0" * 4
    start = data.index(sequence[:8])
    (length,) = struct.unpack("<I", data[start + 8 : start + 12])
    end = start + 12 + length
    innermost = _tag(0x0008, 0x0100) + b"SH" + struct.pack("<H", 2) + b"1 "
    nested = (sequence + item) * depth + innermost + (item_end + sequence_end) * depth
    return data[:start] + nested + data[end:]


@pytest.mark.parametrize("depth", [80, 600])
async def test_deeply_nested_dicom_sequences_are_rejected_with_a_code(app, client, accounts, depth):
    response = await upload(
        client, accounts["pacs1"].headers, ("deep.dcm", _nested_sequence_ct(depth))
    )
    body = assert_error(response, 400, "sequence_too_deep")
    assert body["detail"]["filename"] == "deep.dcm"
    await assert_nothing_stored(app)


def _nested_json(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/users"),
        ("patch", "/api/studies/00000000-0000-0000-0000-000000000000/demographics"),
    ],
)
async def test_json_nested_5000_deep_is_rejected_on_json_routes(client, accounts, method, path):
    response = await getattr(client, method)(
        path,
        content=_nested_json(5000),
        headers={**accounts["admin1"].headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "json_too_deep")


async def test_moderately_nested_json_still_reaches_validation(client, accounts):
    response = await client.post(
        "/api/users",
        content=json.dumps({"username": [[[["x"]]]]}).encode(),
        headers={**accounts["admin1"].headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "validation_failed")


@pytest.mark.parametrize(
    "params",
    [
        {"received_to": "9999-12-31"},
        {"received_from": "9999-12-31"},
        {"offset": str(2**63)},
        {"offset": str(2**64 + 5)},
    ],
)
async def test_extreme_worklist_parameters_answer_4xx_or_an_empty_page(client, accounts, params):
    response = await client.get("/api/cases", params=params, headers=accounts["admin1"].headers)
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert_error(response, 400)


async def test_received_to_end_of_calendar_is_handled(client, accounts):
    response = await client.get(
        "/api/cases", params={"received_to": "9999-12-31"}, headers=accounts["admin1"].headers
    )
    assert response.status_code == 200, response.text


async def test_offset_beyond_bigint_is_rejected(client, accounts):
    response = await client.get(
        "/api/cases", params={"offset": str(2**63)}, headers=accounts["admin1"].headers
    )
    assert_error(response, 400, "validation_failed")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/cases", {"modality": "CT\x00"}),
        ("/api/cases", {"assignee": "me\x00"}),
        ("/api/audit", {"action": "study.ingested\x00"}),
        ("/api/audit", {"actor": "admin1\x00"}),
    ],
)
async def test_nul_byte_in_a_query_parameter_is_rejected(client, accounts, path, params):
    response = await client.get(path, params=params, headers=accounts["admin1"].headers)
    assert_error(response, 400, "nul_byte")


async def test_nul_byte_in_a_json_field_is_rejected(client, accounts):
    response = await client.post(
        "/api/users",
        json={
            "username": "nuluser",
            "password": "x" * 20,
            "role": "radiologist",
            "full_name": "Dr \x00 Who",
        },
        headers=accounts["admin1"].headers,
    )
    assert_error(response, 400, "nul_byte")


async def test_nul_byte_in_a_form_field_is_rejected(client):
    response = await client.post(
        "/api/auth/token",
        data={"grant_type": "password", "username": "admin1\x00", "password": "x"},
    )
    assert response.status_code in (400, 401), response.text


async def test_full_name_over_255_characters_is_rejected(client, accounts):
    response = await client.post(
        "/api/users",
        json={
            "username": "longname",
            "password": "x" * 20,
            "role": "radiologist",
            "full_name": "n" * 256,
        },
        headers=accounts["admin1"].headers,
    )
    assert_error(response, 400, "validation_failed")


async def test_audit_cursor_beyond_bigint_is_rejected(client, accounts):
    response = await client.get(
        "/api/audit", params={"after_id": 2**63}, headers=accounts["admin1"].headers
    )
    assert response.status_code == 400, response.text
