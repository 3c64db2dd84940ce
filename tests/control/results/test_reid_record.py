"""The re-identification record kept at ingest: encrypted per study and per instance under
the ``reid`` key, readable only through :func:`load_record` (audited), absent for NIfTI.
Default settings: no destination, so sign-off queues nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, update

from control.db.models import AuditEntry, InstanceLink, ResultExport, Study, StudyLink
from control.domain.audit.chain import SYSTEM
from control.domain.studies.links import LinkCipher
from control.domain.studies.service import IngestService
from control.errors import StorageIntegrityError
from control.results.records import RecordCipher, load_record
from tests.control.results.signed_cases import (
    ORIGINAL,
    identified_dx,
    inferred_cxr_case,
    original_needles,
    plaintext_hits,
    sign_off,
)
from tests.fixtures.uploads import dicom_bytes, four_channel_nifti, upload


async def _study(app, study_id: str) -> Study:
    async with app.state.session_factory() as session:
        study = await session.get(Study, uuid.UUID(study_id))
        assert study is not None
        return study


async def test_the_record_is_stored_encrypted_and_read_with_an_audit_entry(
    app, client, accounts, settings, tmp_path
):
    ds = identified_dx()
    body = await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)))
    [study_id] = body["study_ids"]

    assert await plaintext_hits(settings, tmp_path, original_needles(ds)) == []
    study = await _study(app, study_id)
    async with app.state.session_factory() as session:
        link = await session.scalar(select(StudyLink).where(StudyLink.study_id == study.id))
        assert link is not None and link.identity_encrypted is not None
        [sealed_uids] = (await session.scalars(select(InstanceLink.uids_encrypted))).all()
        cipher = RecordCipher(settings.key("reid"))
        # Another key (the link key) opens neither part.
        for token in (link.identity_encrypted, sealed_uids):
            with pytest.raises(StorageIntegrityError):
                RecordCipher(settings.key("link")).open(token)
        assert settings.key("reid") != settings.key("link")
        assert LinkCipher(settings.key("link")).decrypt(link.original_study_uid_encrypted) == (
            ds.StudyInstanceUID
        )

        record = await load_record(session, study, cipher, SYSTEM, {"purpose": "test"})
        await session.commit()
    assert record is not None
    assert record.identifying["PatientID"] == ORIGINAL["PatientID"]
    assert record.identifying["PatientName"] == ORIGINAL["PatientName"]
    assert record.identifying["PatientBirthDate"] == ORIGINAL["PatientBirthDate"]
    assert record.identifying["PatientSex"] == "F"
    assert record.identifying["AccessionNumber"] == ORIGINAL["AccessionNumber"]
    assert record.identifying["StudyID"] == ORIGINAL["StudyID"]
    assert record.identifying["StudyDate"] == "20260101"
    assert record.identifying["StudyTime"] == ORIGINAL["StudyTime"]
    assert record.identifying["ReferringPhysicianName"] == ORIGINAL["ReferringPhysicianName"]
    assert record.identifying["StudyInstanceUID"] == ds.StudyInstanceUID
    originals = set(record.uid_map.values())
    assert {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID} <= originals
    assert record.uid_map[study.study_uid] == ds.StudyInstanceUID

    async with app.state.session_factory() as session:
        [entry] = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "study.reid_record_read")
            )
        ).all()
    assert entry.target_id == study_id and entry.actor == "system"
    assert ORIGINAL["PatientID"] not in entry.details


async def test_a_nifti_study_has_no_record(app, client, accounts, settings):
    body = await upload(client, accounts["pacs1"], ("brain.nii.gz", four_channel_nifti()))
    study = await _study(app, body["study_ids"][0])
    async with app.state.session_factory() as session:
        cipher = RecordCipher(settings.key("reid"))
        assert await load_record(session, study, cipher, SYSTEM, {}) is None


async def test_more_images_of_a_study_add_their_uids_to_the_record(app, client, accounts, settings):
    first = identified_dx()
    second = identified_dx(first.StudyInstanceUID)
    for ds in (first, second):
        body = await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)))
    study = await _study(app, body["study_ids"][0])
    async with app.state.session_factory() as session:
        record = await load_record(session, study, RecordCipher(settings.key("reid")), SYSTEM, {})
    assert record is not None
    assert {first.SOPInstanceUID, second.SOPInstanceUID} <= set(record.uid_map.values())


async def test_without_destinations_sign_off_queues_nothing(app, client, accounts):
    case_id, finding_id = await inferred_cxr_case(app, client, accounts, identified_dx())
    await sign_off(client, accounts["rad1"], case_id, {finding_id: {"action": "accept"}})

    response = await client.get(f"/api/cases/{case_id}/exports", headers=accounts["rad1"].headers)
    assert response.status_code == 200 and response.json() == []
    async with app.state.session_factory() as session:
        assert (await session.scalars(select(ResultExport))).all() == []
        queued = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "result.exports_queued")
        )
        assert queued.all() == []


async def test_the_dicom_network_paths_keep_the_record_too(app, client, settings):
    """C-STORE and STOW-RS store through ``IngestService.ingest_each``: same record."""
    ds = identified_dx()
    async with app.state.session_factory() as session:
        service = IngestService(session, app.state.store, settings)
        result, rejected = await service.ingest_each([("a.dcm", dicom_bytes(ds))], SYSTEM)
    assert rejected == []
    study = await _study(app, str(result.studies[0].study_id))
    async with app.state.session_factory() as session:
        record = await load_record(session, study, RecordCipher(settings.key("reid")), SYSTEM, {})
    assert record is not None
    assert record.identifying["PatientID"] == ORIGINAL["PatientID"]
    assert ds.SOPInstanceUID in set(record.uid_map.values())


async def test_a_study_stored_before_records_gets_one_when_it_is_sent_again(
    app, client, accounts, settings
):
    """Studies stored before migration 0007 have no record; a PACS re-sending them fills it."""
    ds = identified_dx()
    body = await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)))
    study = await _study(app, body["study_ids"][0])
    async with app.state.session_factory() as session:  # as before migration 0007
        await session.execute(delete(InstanceLink))
        await session.execute(update(StudyLink).values(identity_encrypted=None))
        await session.commit()
        cipher = RecordCipher(settings.key("reid"))
        assert await load_record(session, study, cipher, SYSTEM, {}) is None

    await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)), expected=200)

    async with app.state.session_factory() as session:
        record = await load_record(session, study, cipher, SYSTEM, {})
    assert record is not None
    assert record.identifying["PatientID"] == ORIGINAL["PatientID"]
    assert ds.SOPInstanceUID in set(record.uid_map.values())
