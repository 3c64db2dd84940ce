"""Shared helpers of the DICOMweb tests: test instances and multipart bodies."""

from __future__ import annotations

import json
from typing import Any

from pydicom.data import get_testdata_file

from tests.fixtures.dx import chest_dx
from tests.fixtures.mr_series import phantom_series
from tests.fixtures.uploads import dicom_bytes

BOUNDARY = "test-boundary-1234"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
DICOM_JSON = "application/dicom+json"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"
RETRIEVE_URL = "00081190"


def pydicom_file(name: str) -> bytes:
    """The bytes of one of the test files pydicom ships."""
    with open(str(get_testdata_file(name)), "rb") as handle:
        return handle.read()


def mr_series_files(slices: int = 3, study_uid: str | None = None) -> list[bytes]:
    """A small synthetic MR series (one file per slice)."""
    datasets = phantom_series("t1", shape=(16, 16, slices), study_uid=study_uid)
    return [dicom_bytes(ds) for ds in datasets]


def multipart(
    parts: list[bytes], boundary: str = BOUNDARY, part_type: str = "application/dicom"
) -> bytes:
    """A multipart/related body of ``parts``."""
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def values(dataset: dict[str, Any], tag: str) -> list[Any]:
    """The Value list of ``tag`` in a DICOM JSON dataset ([] when empty or absent)."""
    return list(dataset.get(tag, {}).get("Value", []))


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The parts' contents of a multipart/related response."""
    boundary = next(
        p.split("=", 1)[1].strip('"') for p in content_type.split(";") if "boundary=" in p
    )
    pieces = body.split(f"--{boundary}".encode())
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        _, _, content = piece.partition(b"\r\n\r\n")
        parts.append(content[:-2])
    return parts


def dicom_json(response: Any) -> Any:
    assert response.headers["content-type"] == DICOM_JSON, response.headers
    return json.loads(response.content)


__all__ = ["chest_dx"]
