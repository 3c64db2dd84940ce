"""The send job against a real C-STORE peer (pynetdicom) that is down, busy or refusing:
retries with backoff, the same SOP Instance UID every time, one stored copy, each attempt
audited; STOW-RS requests as the standard shapes them. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pydicom
import pytest
from sqlalchemy import select

from control.config import Settings
from control.db.models import (
    AuditEntry,
    Case,
    ExportStatus,
    Finding,
    FindingKind,
    ResultExport,
)
from control.domain.audit.chain import SYSTEM
from control.domain.findings.service import case_findings
from control.domain.jobs import queue
from control.inference.worker import Worker
from control.results.destinations import StowDestination
from control.results.jobs import enqueue_case_exports
from control.results.sending import ExportSender, SendFailure, send_stow
from control.served.base import FindingDraft, ModelInfo
from control.triton.server import find_free_port
from tests.control.results.signed_cases import (
    ORIGINAL,
    FlakyStoreSCP,
    destination_settings,
    identified_dx,
    identified_head_ct,
    inferred_ct_head_case,
    inferred_cxr_case,
    original_needles,
    plaintext_hits,
    sign_off,
)
from tests.fixtures.uploads import dicom_bytes, upload

ACCEPT = {"action": "accept"}


@pytest.fixture
def scp_port() -> int:
    return find_free_port()


@pytest.fixture
def settings(database_url: str, tmp_path, scp_port: int) -> Settings:
    destination = {
        "name": "pacs",
        "type": "c-store",
        "host": "127.0.0.1",
        "port": scp_port,
        "ae_title": "FLAKY",
    }
    return destination_settings(database_url, tmp_path, [destination])


@pytest.fixture
def peer(scp_port: int) -> Iterator[FlakyStoreSCP]:
    scp = FlakyStoreSCP(scp_port)
    yield scp
    scp.stop()


@pytest.fixture
def sender(app, settings: Settings) -> ExportSender:
    return ExportSender(settings, app.state.session_factory, app.state.store, "test-sender")


async def _signed_case(app, client, accounts) -> tuple[str, pydicom.Dataset]:
    ds = identified_dx()
    case_id, finding_id = await inferred_cxr_case(app, client, accounts, ds)
    await sign_off(client, accounts["rad1"], case_id, {finding_id: ACCEPT})
    return case_id, ds


async def _export(app, case_id: str) -> ResultExport:
    async with app.state.session_factory() as session:
        [export] = (
            await session.scalars(
                select(ResultExport).where(ResultExport.case_id == uuid.UUID(case_id))
            )
        ).all()
        return export


async def _actions(app, case_id: str) -> list[AuditEntry]:
    async with app.state.session_factory() as session:
        entries = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [e for e in entries if e.target_id == case_id or e.action.startswith("study.reid")]


async def _wait_due(app, case_id: str) -> None:
    export = await _export(app, case_id)
    delay = (export.available_at - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(delay, 0) + 0.05)


async def test_a_down_destination_is_retried_with_backoff_then_stores_the_object_once(
    app, client, accounts, sender, peer
):
    case_id, original = await _signed_case(app, client, accounts)
    export = await _export(app, case_id)
    assert export.status == ExportStatus.PENDING and export.destination == "pacs"

    assert await sender.run_once() is True  # the peer is down: connection refused
    failed = await _export(app, case_id)
    assert failed.status == ExportStatus.PENDING
    assert failed.attempts == 1 and failed.error_code == "peer_unreachable"
    assert failed.available_at > datetime.now(UTC)  # backoff before the next attempt
    assert await sender.run_once() is False  # not due yet

    peer.start()
    await _wait_due(app, case_id)
    assert await sender.run_once() is True
    sent = await _export(app, case_id)
    assert sent.status == ExportStatus.SENT and sent.attempts == 2 and sent.sent_at is not None
    assert sent.error_code is None
    assert await sender.run_once() is False  # nothing left: sent exactly once

    [stored] = peer.received
    assert peer.calling_aes == ["MEDVISION"]  # MEDVISION_DICOM_AE_TITLE, the listener's
    assert stored.SOPInstanceUID == export.sop_instance_uid
    assert stored.SeriesInstanceUID == export.series_instance_uid
    assert stored.Modality == "SR" and stored.VerificationFlag == "VERIFIED"
    # Filed under the patient's own study, referencing the original image.
    assert stored.PatientID == ORIGINAL["PatientID"]
    assert stored.StudyInstanceUID == original.StudyInstanceUID
    assert stored.AccessionNumber == ORIGINAL["AccessionNumber"]
    [evidence] = stored.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == original.StudyInstanceUID
    [series] = evidence.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == original.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID

    entries = await _actions(app, case_id)
    actions = [e.action for e in entries]
    assert actions.count("result.exports_queued") == 1
    assert actions.count("result.send_failed") == 1
    assert actions.count("result.sent") == 1
    assert actions.count("study.reid_record_read") == 2  # each attempt read the record
    sent_entry = next(e for e in entries if e.action == "result.sent")
    assert sent_entry.actor == SYSTEM.username
    for entry in entries:
        for needle in (ORIGINAL["PatientID"], original.StudyInstanceUID):
            assert needle not in entry.details

    response = await client.get(f"/api/cases/{case_id}/exports", headers=accounts["rad1"].headers)
    assert response.status_code == 200, response.text
    [listed] = response.json()
    assert listed["status"] == "sent" and listed["attempts"] == 2
    assert listed["sop_instance_uid"] == export.sop_instance_uid
    assert listed["last_error"] is None and listed["sent_at"]


async def test_a_busy_peer_gets_the_same_sop_instance_uid_again(
    app, client, accounts, sender, peer
):
    peer.statuses = [0xA700]  # out of resources: worth another attempt
    peer.start()
    case_id, _original = await _signed_case(app, client, accounts)

    assert await sender.run_once() is True
    assert (await _export(app, case_id)).error_code == "c_store_failed"
    await _wait_due(app, case_id)
    assert await sender.run_once() is True

    export = await _export(app, case_id)
    assert export.status == ExportStatus.SENT and export.attempts == 2
    assert [ds.SOPInstanceUID for ds in peer.received] == [export.sop_instance_uid] * 2
    assert len(peer.stored) == 1


async def test_a_refused_object_fails_at_once(app, client, accounts, sender, peer):
    peer.statuses = [0xA900]  # the dataset does not match the SOP class: retrying cannot help
    peer.start()
    case_id, _original = await _signed_case(app, client, accounts)

    assert await sender.run_once() is True
    export = await _export(app, case_id)
    assert export.status == ExportStatus.FAILED and export.attempts == 1
    assert export.error_code == "c_store_failed"
    assert await sender.run_once() is False
    [entry] = [e for e in await _actions(app, case_id) if e.action == "result.send_failed"]
    assert entry.outcome == "failure"
    assert '"final": true' in entry.details and '"status": 43264' in entry.details


async def test_queueing_again_adds_no_second_export(app, client, accounts, settings):
    case_id, _original = await _signed_case(app, client, accounts)
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        assert case is not None
        findings = await case_findings(session, case.id)
        assert await enqueue_case_exports(session, case, findings, settings, SYSTEM) == []
        await session.commit()
    assert (await _export(app, case_id)).status == ExportStatus.PENDING


async def test_an_export_whose_destination_was_removed_fails(
    app, client, accounts, settings, database_url, tmp_path
):
    case_id, _original = await _signed_case(app, client, accounts)
    other = destination_settings(database_url, tmp_path, [])
    sender = ExportSender(other, app.state.session_factory, app.state.store, "test-sender")

    assert await sender.run_once() is True
    export = await _export(app, case_id)
    assert export.status == ExportStatus.FAILED and export.error_code == "destination_unknown"


# STOW-RS: (case, HTTP status, expected outcome: status returned or (code, retryable))
STOW_CASES = [
    ("stored", 200, 200),
    ("stored with warnings", 202, 202),
    ("server error", 503, ("stow_failed", True)),
    ("throttled", 429, ("stow_failed", True)),
    ("all failed", 409, ("stow_failed", False)),
    ("unauthorised", 401, ("stow_failed", False)),
]


@pytest.mark.parametrize(
    ("status", "expected"), [c[1:] for c in STOW_CASES], ids=[c[0] for c in STOW_CASES]
)
async def test_stow_rs_request_and_outcome(status: int, expected):
    ds = identified_dx()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={})

    destination = StowDestination(
        name="web", type="stow-rs", url="http://pacs.invalid/dicom-web/", token="s3cret"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        if isinstance(expected, int):
            assert await send_stow(ds, destination, 5.0, client) == expected
        else:
            with pytest.raises(SendFailure) as failure:
                await send_stow(ds, destination, 5.0, client)
            assert (failure.value.code, failure.value.retryable) == expected
            assert failure.value.status == status

    [request] = seen
    assert str(request.url) == "http://pacs.invalid/dicom-web/studies"
    assert request.headers["authorization"] == "Bearer s3cret"
    content_type = request.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = content_type.split("boundary=")[1]
    body = request.content
    assert body.startswith(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())
    part = body.split(b"\r\n\r\n", 1)[1].rsplit(f"\r\n--{boundary}--".encode(), 1)[0]
    assert pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID == ds.SOPInstanceUID


async def test_an_unreachable_stow_server_is_retryable():
    destination = StowDestination(
        name="web", type="stow-rs", url=f"http://127.0.0.1:{find_free_port()}"
    )
    with pytest.raises(SendFailure) as failure:
        await send_stow(identified_dx(), destination, 2.0)
    assert failure.value.retryable and failure.value.code == "peer_unreachable"


async def test_nothing_identifying_is_stored_or_logged(
    app, client, accounts, sender, peer, settings, tmp_path, caplog, capfd
):
    """The original identifiers reach the peer and nowhere else: not the database, not the
    data directory, not the logs (the record is stored encrypted, re-identification happens
    in memory)."""
    caplog.set_level(logging.DEBUG)
    peer.start()
    case_id, original = await _signed_case(app, client, accounts)
    assert await sender.run_once() is True
    [stored] = peer.received
    assert stored.PatientID == ORIGINAL["PatientID"]  # the peer has them

    needles = original_needles(original)
    assert await plaintext_hits(settings, tmp_path, needles) == []
    # The search finds what is there: the export's own UID is stored in plaintext.
    export = await _export(app, case_id)
    assert await plaintext_hits(settings, tmp_path, [export.sop_instance_uid])
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r}" for record in caplog.records
    ) + "".join(capfd.readouterr())
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert [needle for needle in needles if needle in logged] == []


async def test_a_preliminary_sr_goes_out_right_after_inference_when_asked(
    app, client, accounts, settings, peer
):
    """With MEDVISION_RESULTS_PRELIMINARY_SR the worker queues an UNVERIFIED SR with the
    findings; the signed-off SR that follows is another object (its own SOP Instance UID)."""
    preliminary = settings.model_copy(update={"results_preliminary_sr": True})
    factory, store = app.state.session_factory, app.state.store
    worker = Worker(preliminary, factory, store, worker_id="test-worker")
    sender = ExportSender(preliminary, factory, store, "test-sender")
    peer.start()
    ds = identified_dx()
    body = await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)))
    [case_id] = body["case_ids"]
    taken = await queue.claim_and_load(factory, "test-worker", preliminary, worker.load_job)
    assert taken is not None
    claimed, loaded = taken
    assert loaded is not None and str(loaded.case.id) == case_id
    [instance] = loaded.route.instances
    instance_id = instance.id
    draft = FindingDraft(
        subject=str(instance_id),
        kind=FindingKind.CLASSIFICATION,
        model=ModelInfo("cxr", "cxr_net", "test-1", None, True),
        instance_id=instance_id,
        labels=["Effusion"],
        probabilities={"Effusion": 0.8, "Nodule": 0.1},
        thresholds={"Effusion": 0.5, "Nodule": 0.5},
    )
    assert await worker.complete(claimed, [draft], loaded) is True

    [queued] = (
        await client.get(f"/api/cases/{case_id}/exports", headers=accounts["rad1"].headers)
    ).json()
    assert queued["object"] == "cxr-sr-preliminary" and queued["status"] == "pending"
    assert await sender.run_once() is True
    [sent] = peer.received
    assert sent.VerificationFlag == "UNVERIFIED" and sent.PreliminaryFlag == "PRELIMINARY"
    assert sent.PatientID == ORIGINAL["PatientID"] and sent.StudyInstanceUID == ds.StudyInstanceUID

    async with factory() as session:
        finding_id = await session.scalar(
            select(Finding.id).where(Finding.case_id == uuid.UUID(case_id))
        )
    await sign_off(client, accounts["rad1"], case_id, {str(finding_id): ACCEPT})
    assert await sender.run_once() is True
    final = peer.received[-1]
    assert final.VerificationFlag == "VERIFIED" and final.PreliminaryFlag == "FINAL"
    assert final.SOPInstanceUID != sent.SOPInstanceUID
    exports = (
        await client.get(f"/api/cases/{case_id}/exports", headers=accounts["rad1"].headers)
    ).json()
    assert sorted((e["object"], e["status"]) for e in exports) == [
        ("cxr-sr", "sent"),
        ("cxr-sr-preliminary", "sent"),
    ]


async def test_an_admin_sends_failed_exports_again(app, client, accounts, sender, peer):
    """A refused object fails for good; once the PACS is fixed an admin re-queues it, and the
    same SOP Instance UID goes out again."""
    peer.statuses = [0xA900]
    peer.start()
    case_id, _original = await _signed_case(app, client, accounts)
    assert await sender.run_once() is True
    assert (await _export(app, case_id)).status == ExportStatus.FAILED

    url = f"/api/cases/{case_id}/exports/retry"
    response = await client.post(url, headers=accounts["rad1"].headers)
    assert response.status_code == 403
    response = await client.post(url, headers=accounts["admin1"].headers)
    assert response.status_code == 200, response.text
    [listed] = response.json()
    assert listed["status"] == "pending" and listed["attempts"] == 0
    assert listed["last_error"] is None

    assert await sender.run_once() is True
    export = await _export(app, case_id)
    assert export.status == ExportStatus.SENT and export.attempts == 1
    assert [ds.SOPInstanceUID for ds in peer.received] == [export.sop_instance_uid] * 2
    response = await client.post(url, headers=accounts["admin1"].headers)
    assert response.status_code == 409 and response.json()["code"] == "no_failed_exports"
    actions = [e.action for e in await _actions(app, case_id)]
    assert actions.count("result.exports_requeued") == 1


async def test_a_slow_send_keeps_its_lease(app, client, accounts, settings, peer):
    """A send that outlasts one lease renews it: another worker does not send it again."""
    short = settings.model_copy(update={"job_lease_s": 1.0})
    factory, store = app.state.session_factory, app.state.store
    first, second = (ExportSender(short, factory, store, name) for name in ("a", "b"))
    peer.delay_s = 2.5
    peer.start()
    case_id, _original = await _signed_case(app, client, accounts)

    sending = asyncio.create_task(first.run_once())
    await asyncio.sleep(1.8)  # the first lease has run out by now
    assert await second.run_once() is False
    assert await sending is True

    export = await _export(app, case_id)
    assert export.status == ExportStatus.SENT and export.attempts == 1
    assert len(peer.received) == 1


async def test_a_signed_off_head_ct_goes_out_as_an_sr_on_the_original_slices(
    app, client, accounts, sender, peer
):
    peer.start()
    slices = identified_head_ct(3)
    case_id, finding_id = await inferred_ct_head_case(app, client, accounts, slices)
    edit = {"action": "edit", "labels": ["any"], "reason": "the subdural call is a vessel"}
    await sign_off(client, accounts["rad1"], case_id, {finding_id: edit})

    assert await sender.run_once() is True
    export = await _export(app, case_id)
    assert (export.object_name, export.status) == ("ct-head-sr", ExportStatus.SENT)
    [sr] = peer.stored
    assert sr.PatientID == ORIGINAL["PatientID"]  # re-identified on the way out
    assert sr.StudyInstanceUID == slices[0].StudyInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in evidence.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in slices
    }

    def items(node):
        for item in node.get("ContentSequence", []):
            yield item
            yield from items(item)

    presences = [
        item.ConceptCodeSequence[0].CodeMeaning
        for item in items(sr)
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Presence of property"
    ]
    assert presences == ["Present"] + ["Absent"] * 5  # "any" kept, "subdural" edited away
