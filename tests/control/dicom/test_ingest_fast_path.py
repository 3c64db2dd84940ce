"""The ingest's shortcuts change no byte: in-place de-identification and the one-pass writer.

The ingest de-identifies the data set it parsed itself (no deep copy) and writes the Part 10
file without re-copying the pixel data (``encode_dicom``). Both must give exactly what the
copy-and-``dcmwrite`` path gives, on every one of pydicom's test files the ingest accepts:
the stored de-identified objects and their SHA-256 stay the same.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from control.dicom.deid import deidentify
from control.dicom.reader import UploadLimits, read_dicom
from control.domain.studies.prepare import encode_dicom, prepare_each
from control.errors import MedVisionError

KEY = b"fast-path-test-key-0123456789abcdef"
LIMITS = UploadLimits(
    max_file_bytes=1 << 30,
    max_image_dimension=16384,
    max_image_pixels=1 << 28,
    max_frames=4096,
    max_volume_voxels=1 << 28,
)


def _accepted() -> list[Path]:
    accepted = []
    for name in sorted({Path(p) for p in get_testdata_files("*.dcm")}, key=lambda p: p.name):
        try:
            read_dicom(name.read_bytes(), name.name, LIMITS)
        except MedVisionError:
            continue
        accepted.append(name)
    return accepted


ACCEPTED = _accepted()


def _dcmwrite(ds: pydicom.Dataset) -> bytes:
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_the_corpus_covers_the_encodings_the_writer_must_get_right() -> None:
    syntaxes = {str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) for path in ACCEPTED}
    assert len(ACCEPTED) >= 40
    assert {
        "1.2.840.10008.1.2",  # implicit VR
        "1.2.840.10008.1.2.1",  # explicit VR little endian
        "1.2.840.10008.1.2.2",  # explicit VR big endian
        "1.2.840.10008.1.2.1.99",  # deflated
        "1.2.840.10008.1.2.5",  # RLE (encapsulated)
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless (encapsulated)
    } <= syntaxes


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda path: path.name)
def test_in_place_de_identification_writes_the_same_bytes_as_the_copy(path: Path) -> None:
    data = path.read_bytes()
    original = read_dicom(data, path.name, LIMITS).dataset
    untouched = copy.deepcopy(original)

    from_copy = deidentify(original, KEY)
    assert _dcmwrite(original) == _dcmwrite(untouched)  # the default still copies
    in_place = deidentify(original, KEY, in_place=True)

    assert in_place.dataset is original
    assert _dcmwrite(in_place.dataset) == _dcmwrite(from_copy.dataset)
    learnt = {f.name for f in dataclasses.fields(in_place)} - {"dataset"}
    assert {name: getattr(in_place, name) for name in learnt} == {
        name: getattr(from_copy, name) for name in learnt
    }


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda path: path.name)
def test_one_pass_writer_gives_dcmwrite_bytes(path: Path) -> None:
    deid = deidentify(read_dicom(path.read_bytes(), path.name, LIMITS).dataset, KEY).dataset

    assert encode_dicom(deid) == _dcmwrite(deid)


def test_prepared_instance_hash_is_the_stored_payload_hash() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()

    studies, rejected = prepare_each([("ct.dcm", data)], LIMITS, KEY)

    assert rejected == []
    (instance,) = studies[0].instances
    assert instance.sha256 == hashlib.sha256(instance.payload).hexdigest()
    assert instance.payload != data and pydicom.dcmread(BytesIO(instance.payload)).PatientName
