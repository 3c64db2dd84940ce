"""No PHI survives ingest: not in stored objects, not in any database column, not in answers.

The PHI fixture (``tests.fixtures.phi``) carries a unique marker in every attribute of the
PS3.15 Basic Profile, in nested sequences, private blocks, overlays and curves. It is uploaded
through the API on both databases and both object stores; then every stored byte is searched
case-insensitively for every marker.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.sequence import Sequence
from sqlalchemy import inspect, select, text

from control.db.models import AuditEntry, Instance
from tests.control.domain.test_studies import (
    UPLOAD_URL,
    app_with,
    bucket_objects,
    dicom_bytes,
    instances,
    s3_overrides,
    upload,
)
from tests.fixtures.phi import PHI_MARKERS, make_phi_dataset, write_phi_file

#: SOP Instance UID of the nested variant, under the fixture's marker root (so it is PHI too).
VARIANT_SOP_INSTANCE_UID = "1.2.826.0.1.3680043.10.999.99999"
ALL_MARKERS = [*PHI_MARKERS, VARIANT_SOP_INSTANCE_UID.encode()]
_MARKER_PATTERN = re.compile(
    b"|".join(re.escape(marker) for marker in sorted(ALL_MARKERS, key=len, reverse=True)),
    re.IGNORECASE,
)
_NESTED_LEVELS = 6

ObjectDump = Callable[[], dict[str, bytes]]


#: Hashes and UUIDs (random hex) are blanked before a search: many markers are 8-digit
#: dates, which a random hex string contains now and then by chance.
_RANDOM_HEX = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32,}", re.IGNORECASE
)


def find_markers(blob: bytes) -> set[bytes]:
    """Every PHI marker found in ``blob``, case-insensitively."""
    blob = _RANDOM_HEX.sub(b"-", blob)
    return {match.group(0) for match in _MARKER_PATTERN.finditer(blob)}


def find_markers_in_text(value: str) -> set[str]:
    """Every PHI marker found in the text ``value``, case-insensitively."""
    lowered = _RANDOM_HEX.sub(b"-", value.encode("latin-1")).decode("latin-1").lower()
    return {m.decode() for m in ALL_MARKERS if m.decode().lower() in lowered}


def nested_variant() -> bytes:
    """A second instance of the PHI study whose PHI-laden items sit many sequence levels deep,
    inside unlisted (kept) sequences and profile-listed ones alike."""
    ds = make_phi_dataset()
    phi_item = ds.ProcedureCodeSequence[0]
    item = copy.deepcopy(phi_item)
    for _ in range(_NESTED_LEVELS):
        outer = pydicom.Dataset()
        outer.PatientName = ds.PatientName
        outer.PatientID = ds.PatientID
        outer.AnatomicRegionSequence = Sequence([item, copy.deepcopy(phi_item)])
        outer.ReferencedPatientSequence = Sequence([copy.deepcopy(phi_item)])
        item = outer
    ds.AnatomicRegionSequence = Sequence([item])
    ds.SOPInstanceUID = VARIANT_SOP_INSTANCE_UID
    ds.InstanceNumber = 2
    ds.file_meta.MediaStorageSOPInstanceUID = VARIANT_SOP_INSTANCE_UID
    return dicom_bytes(ds)


def data_dir_files(data_dir: Path) -> dict[str, bytes]:
    """Every file under the data directory, raw: objects with their headers, temporary files,
    the SQLite database with its WAL and journal."""
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }


async def dump_database(app: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database (as reflected, so nothing is missed)."""
    async with app.state.session_factory() as session:
        connection = await session.connection()
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        declared = {table.name for table in AuditEntry.metadata.sorted_tables}
        assert declared <= set(names), declared - set(names)
        dump = {}
        for name in names:
            rows = await session.execute(text(f'SELECT * FROM "{name}"'))
            dump[name] = [tuple(row) for row in rows]
        return dump


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def phi_in_database(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, set[bytes]]:
    """Markers found per table, searching each value raw and as text."""
    found: dict[str, set[bytes]] = {}
    for table, rows in dump.items():
        hits: set[bytes] = set()
        for row in rows:
            for value in row:
                raw = _as_bytes(value)
                hits |= find_markers(raw)
                hits |= {m.encode() for m in find_markers_in_text(raw.decode("latin-1"))}
        if hits:
            found[table] = hits
    return found


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
async def store_env(
    request: pytest.FixtureRequest, app: Any, client: Any, settings: Any
) -> AsyncIterator[tuple[Any, Any, ObjectDump]]:
    """The app and client on one object store, and a function reading every stored object raw."""
    if request.param == "filesystem":
        yield app, client, lambda: data_dir_files(settings.data_dir)
        return
    s3_server = request.getfixturevalue("s3_server")
    overrides = s3_overrides(s3_server)
    async with app_with(settings, **overrides) as (s3_app, s3_client):
        yield s3_app, s3_client, lambda: bucket_objects(s3_server, overrides["s3_bucket"])


async def _upload_phi(client: Any, headers: dict[str, str], tmp_path: Path) -> Any:
    phi_file = write_phi_file(tmp_path / "phi.dcm")
    response = await upload(
        client,
        headers,
        ("phi.dcm", phi_file.read_bytes()),
        ("phi-nested.dcm", nested_variant()),
        data={"race_ethnicity": "Declined"},
    )
    assert response.status_code == 201, response.text
    return response


def test_fixture_carries_the_markers(tmp_path):
    """Guards the test itself: the uploaded files really contain the PHI searched for."""
    original = write_phi_file(tmp_path / "phi.dcm").read_bytes()
    assert find_markers(original) >= {m for m in PHI_MARKERS if m.isascii()} - {b""}
    assert VARIANT_SOP_INSTANCE_UID.encode() in find_markers(nested_variant())
    assert make_phi_dataset().StudyInstanceUID.encode() in PHI_MARKERS


async def test_no_phi_in_stored_objects(store_env, accounts, tmp_path):
    app, client, dump_objects = store_env

    response = await _upload_phi(client, accounts["pacs1"].headers, tmp_path)

    stored = await instances(app)
    assert len(stored) == 2
    objects = dump_objects()
    assert {instance.object_key for instance in stored} <= {
        key.removeprefix("objects/") for key in objects
    }
    leaks = {name: find_markers(blob) for name, blob in objects.items()}
    assert {name: hits for name, hits in leaks.items() if hits} == {}
    assert find_markers(response.content) == set()
    for instance in stored:
        payload = await app.state.store.get(instance.object_key, expected_sha256=instance.sha256)
        ds = pydicom.dcmread(BytesIO(payload))
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName).startswith("ANON-")
        assert ds.preamble == b"\0" * 128


async def test_no_phi_in_any_database_column(store_env, accounts, tmp_path):
    app, client, _ = store_env
    headers = accounts["admin1"].headers
    response = await _upload_phi(client, accounts["pacs1"].headers, tmp_path)
    [study_id] = response.json()["study_ids"]
    [case_id] = response.json()["case_ids"]
    detail = await client.get(f"{UPLOAD_URL}/{study_id}", headers=headers)
    case = await client.get(f"/api/cases/{case_id}", headers=headers)
    worklist = await client.get("/api/cases", headers=headers)
    link = await client.get(f"{UPLOAD_URL}/{study_id}/link", headers=headers)
    for answer in (detail, case, worklist, link):
        assert answer.status_code == 200, answer.text

    dump = await dump_database(app)

    assert phi_in_database(dump) == {}
    assert dump["studies"] and dump["instances"] and dump["audit_log"]
    for answer in (detail, case, worklist):
        assert find_markers(answer.content) == set()


async def test_original_study_uid_is_only_recoverable_through_the_link(
    store_env, accounts, tmp_path
):
    app, client, _ = store_env
    original_uid = make_phi_dataset().StudyInstanceUID
    response = await _upload_phi(client, accounts["pacs1"].headers, tmp_path)
    [study_id] = response.json()["study_ids"]

    dump = await dump_database(app)
    every_value = b"\n".join(
        _as_bytes(value) for rows in dump.values() for row in rows for value in row
    )
    assert original_uid.encode() not in every_value
    async with app.state.session_factory() as session:
        pseudonyms = set((await session.scalars(select(Instance.sop_instance_uid))).all())
    assert VARIANT_SOP_INSTANCE_UID not in pseudonyms

    link = await client.get(f"{UPLOAD_URL}/{study_id}/link", headers=accounts["pacs1"].headers)

    assert link.status_code == 200, link.text
    assert link.json()["original_study_uid"] == original_uid
    assert link.json()["study_uid"] != original_uid


async def test_no_phi_in_logs(store_env, accounts, tmp_path, capfd):
    _, client, _ = store_env
    capfd.readouterr()

    response = await _upload_phi(client, accounts["pacs1"].headers, tmp_path)
    await client.get(f"{UPLOAD_URL}/{response.json()['study_ids'][0]}", headers={})

    out, err = capfd.readouterr()
    assert find_markers((out + err).encode()) == set()
