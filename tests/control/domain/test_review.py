"""Radiologist review without Triton: decisions, supersede chains, mask edits and sign-off.

Cases come in through the upload API (and so are queued); the tests then write what the job
worker would have written (the job done, findings, the case ``inferred``) directly to the
database, and a segmentation's label map to the object store. Every test runs on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select, update

from control.db.models import (
    AuditEntry,
    Case,
    CaseStatus,
    Decision,
    DecisionAction,
    Finding,
    FindingKind,
    InferenceJob,
    JobStatus,
    Role,
)
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.domain.cases import workflow
from control.domain.cases.service import get_case
from control.domain.findings import service as review
from control.domain.findings.service import DecisionRequest
from control.errors import ConflictError
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import four_channel_nifti, label_map_nifti, upload

PROBABILITIES = {"Atelectasis": 0.12, "Effusion": 0.81, "Nodule": 0.34}
SEG_SHAPE = (8, 8, 6)
SEG_ZOOMS = (1.2, 1.2, 1.5)
VOXEL_ML = 1.2 * 1.2 * 1.5 / 1000

# ---------------------------------------------------------------------------------------------
# Helpers: cases with findings as the worker would leave them
# ---------------------------------------------------------------------------------------------


def _finding(case_id: uuid.UUID, job_id: uuid.UUID, subject: str, kind: FindingKind) -> Finding:
    classification = kind == FindingKind.CLASSIFICATION
    return Finding(
        id=uuid.uuid4(),
        case_id=case_id,
        job_id=job_id,
        subject=subject,
        kind=kind,
        model_name="cxr" if classification else "brats",
        network_name="test_net",
        model_version="test-1",
        synthetic_model=True,
        labels=["Effusion"] if classification else [],
        probabilities=dict(PROBABILITIES) if classification else {},
        thresholds=dict.fromkeys(PROBABILITIES, 0.5) if classification else {},
        volumes_ml={},
        artifacts={},
        input_sha256="a" * 64,
        output_sha256="b" * 64,
        latency_ms=12.5,
        decisions=[],
    )


async def _infer(
    app, case_id: str, *findings: tuple[str, FindingKind, dict[str, str]]
) -> list[str]:
    """Mark the case's job done, add findings ``(subject, kind, artifacts)``; their ids."""
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        assert case is not None
        job = await session.scalar(select(InferenceJob).where(InferenceJob.case_id == case.id))
        assert job is not None
        job.status = JobStatus.DONE
        job.attempts = 1
        rows = []
        for subject, kind, artifacts in findings:
            row = _finding(case.id, job.id, subject, kind)
            row.artifacts = artifacts
            rows.append(row)
        session.add_all(rows)
        case.status = CaseStatus.INFERRED
        await session.commit()
        return [str(row.id) for row in rows]


async def _dx_case(app, client, accounts, findings: int = 1) -> tuple[str, list[str]]:
    """An inferred chest radiograph case with ``findings`` classification findings."""
    body = await upload(client, accounts["pacs1"], ("chest.dcm", chest_dx(64)))
    [case_id] = body["case_ids"]
    assert body["studies"][0]["status"] == "queued"
    specs = [(f"image-{index}", FindingKind.CLASSIFICATION, {}) for index in range(findings)]
    return case_id, await _infer(app, case_id, *specs)


async def _segmentation_case(app, client, accounts) -> tuple[str, str]:
    """An inferred 4-channel MRI case with one segmentation finding and its stored label map."""
    body = await upload(client, accounts["pacs1"], ("brain.nii.gz", four_channel_nifti()))
    [case_id] = body["case_ids"]
    labels = np.zeros(SEG_SHAPE, dtype=np.uint8)
    labels[2:5, 2:5, 1:3] = 2
    key = f"derived/cases/{case_id}/jobs/test/segmentation.nii.gz"
    await app.state.store.put(key, label_map_nifti(labels, SEG_ZOOMS))
    [finding_id] = await _infer(
        app, case_id, ("volume", FindingKind.SEGMENTATION, {"segmentation": key})
    )
    return case_id, finding_id


async def _claim(client, account, case_id: str) -> None:
    response = await client.post(f"/api/cases/{case_id}/claim", headers=account.headers)
    assert response.status_code == 200, response.text


async def _decide(client, account, case_id: str, finding_id: str, **body):
    return await client.post(
        f"/api/cases/{case_id}/findings/{finding_id}/decisions", json=body, headers=account.headers
    )


async def _decided(client, account, case_id: str, finding_id: str, **body) -> dict:
    response = await _decide(client, account, case_id, finding_id, **body)
    assert response.status_code == 201, response.text
    decision: dict = response.json()
    return decision


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body: dict = response.json()
    assert body["code"] == code, body
    return body


async def _case(client, account, case_id: str) -> dict:
    response = await client.get(f"/api/cases/{case_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    case: dict = response.json()
    return case


async def _sign_off(client, account, case_id: str, version: int, note: str | None = None):
    return await client.post(
        f"/api/cases/{case_id}/sign-off",
        json={"version": version, "note": note},
        headers=account.headers,
    )


async def _upload_mask(client, account, case_id: str, finding_id: str, payload: bytes, **form):
    return await client.post(
        f"/api/cases/{case_id}/findings/{finding_id}/mask",
        files={"file": ("mask.nii.gz", payload, "application/gzip")},
        data={"reason": "tumour extends further", **form},
        headers=account.headers,
    )


async def _decision_count(app, finding_id: str) -> int:
    async with app.state.session_factory() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Decision)
            .where(Decision.finding_id == uuid.UUID(finding_id))
        )
        return int(count or 0)


async def _audit(app, action: str, case_id: str) -> list[AuditEntry]:
    async with app.state.session_factory() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == action, AuditEntry.target_id == case_id)
            .order_by(AuditEntry.id)
        )
        return list(rows.all())


async def _audit_ok(client, admin) -> None:
    response = await client.get("/api/audit/verify", headers=admin.headers)
    assert response.status_code == 200 and response.json()["ok"] is True, response.text


# ---------------------------------------------------------------------------------------------
# Who may decide
# ---------------------------------------------------------------------------------------------


async def test_only_the_radiologist_holding_the_case_decides(app, client, accounts):
    rad1, rad2, admin = accounts["rad1"], accounts["rad2"], accounts["admin1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)

    _error(
        await _decide(client, rad1, case_id, finding_id, action="accept"), 403, "not_case_holder"
    )
    _error(
        await _decide(client, admin, case_id, finding_id, action="accept"), 403, "permission_denied"
    )
    _error(
        await _decide(client, accounts["pacs1"], case_id, finding_id, action="accept"),
        403,
        "permission_denied",
    )

    await _claim(client, rad1, case_id)
    # rad2 cannot see rad1's case, yet a decision on it answers 403, not 404.
    response = await client.get(f"/api/cases/{case_id}", headers=rad2.headers)
    assert response.status_code == 404
    _error(
        await _decide(client, rad2, case_id, finding_id, action="accept"), 403, "not_case_holder"
    )
    assert await _decision_count(app, finding_id) == 0

    _error(
        await _decide(client, rad1, case_id, str(uuid.uuid4()), action="accept"),
        404,
        "finding_not_found",
    )
    decision = await _decided(client, rad1, case_id, finding_id, action="accept", note=" agree ")
    assert decision["action"] == "accept" and decision["username"] == "rad1"
    assert (decision["sequence"], decision["supersedes_id"]) == (1, None)
    assert decision["note"] == "agree" and decision["reason"] is None
    assert (await _case(client, rad1, case_id))["status"] == "in_review"
    assert await _decision_count(app, finding_id) == 1


# ---------------------------------------------------------------------------------------------
# Accept, reject, edit
# ---------------------------------------------------------------------------------------------


async def test_reject_and_edit_need_reasons_and_valid_labels(app, client, accounts):
    rad1 = accounts["rad1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)

    _error(
        await _decide(client, rad1, case_id, finding_id, action="reject"), 400, "reason_required"
    )
    _error(
        await _decide(client, rad1, case_id, finding_id, action="reject", reason="   "),
        400,
        "reason_required",
    )
    _error(
        await _decide(client, rad1, case_id, finding_id, action="edit", labels=["Effusion"]),
        400,
        "reason_required",
    )
    _error(
        await _decide(client, rad1, case_id, finding_id, action="edit", reason="x"),
        400,
        "labels_required",
    )
    body = _error(
        await _decide(
            client,
            rad1,
            case_id,
            finding_id,
            action="edit",
            reason="missed mass",
            labels=["Mass", "Effusion", "Zebra"],
        ),
        400,
        "invalid_labels",
    )
    assert body["detail"]["unknown"] == ["Mass", "Zebra"]
    assert body["detail"]["known"] == sorted(PROBABILITIES)
    _error(
        await _decide(client, rad1, case_id, finding_id, action="accept", labels=["Effusion"]),
        400,
        "edit_fields_without_edit",
    )
    assert await _decision_count(app, finding_id) == 0

    edit = await _decided(
        client,
        rad1,
        case_id,
        finding_id,
        action="edit",
        reason="nodule as well",
        labels=["Nodule", "Effusion", "Nodule"],
    )
    assert (edit["action"], edit["labels"], edit["reason"]) == (
        "edit",
        ["Effusion", "Nodule"],
        "nodule as well",
    )
    reject = await _decided(
        client,
        rad1,
        case_id,
        finding_id,
        action="reject",
        reason="artefact",
        supersedes=edit["id"],
    )
    assert (reject["action"], reject["labels"], reject["sequence"]) == ("reject", None, 2)
    async with app.state.session_factory() as session:
        stored = await session.get(Decision, uuid.UUID(edit["id"]))
        assert stored is not None and stored.labels == ["Effusion", "Nodule"]


async def test_decisions_form_a_supersede_chain(app, client, accounts):
    rad1, admin = accounts["rad1"], accounts["admin1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)

    first = await _decided(client, rad1, case_id, finding_id, action="accept")
    body = _error(
        await _decide(client, rad1, case_id, finding_id, action="reject", reason="second look"),
        409,
        "stale_decision",
    )
    assert body["detail"]["current_decision_id"] == first["id"]
    _error(
        await _decide(
            client,
            rad1,
            case_id,
            finding_id,
            action="reject",
            reason="x",
            supersedes=str(uuid.uuid4()),
        ),
        409,
        "stale_decision",
    )

    second = await _decided(
        client,
        rad1,
        case_id,
        finding_id,
        action="reject",
        reason="second look",
        supersedes=first["id"],
    )
    assert (second["sequence"], second["supersedes_id"]) == (2, first["id"])
    _error(
        await _decide(client, rad1, case_id, finding_id, action="accept", supersedes=first["id"]),
        409,
        "stale_decision",
    )
    assert await _decision_count(app, finding_id) == 2

    case = await _case(client, admin, case_id)
    [finding] = case["findings"]
    assert finding["id"] == finding_id
    assert [d["id"] for d in finding["decisions"]] == [first["id"], second["id"]]
    assert finding["current_decision"]["id"] == second["id"]
    assert finding["current_decision"]["action"] == "reject"
    assert finding["probabilities"] == PROBABILITIES
    actions = [entry["action"] for entry in case["history"]]
    for expected in ("study.ingested", "inference.queued", "case.assigned", "decision.recorded"):
        assert expected in actions, actions
    recorded = [e for e in case["history"] if e["action"] == "decision.recorded"]
    assert [e["details"]["decision_id"] for e in recorded] == [first["id"], second["id"]]
    assert recorded[1]["details"]["supersedes"] == first["id"]
    assert recorded[1]["details"]["ai_labels"] == ["Effusion"]
    await _audit_ok(client, admin)


async def test_concurrent_decisions_store_exactly_one(app, client, accounts):
    rad1, admin = accounts["rad1"], accounts["admin1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)

    supersedes = None
    for round_number in (1, 2):
        responses = await asyncio.gather(
            _decide(client, rad1, case_id, finding_id, action="accept", supersedes=supersedes),
            _decide(
                client,
                rad1,
                case_id,
                finding_id,
                action="reject",
                reason="artefact",
                supersedes=supersedes,
            ),
        )
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        loser = next(r for r in responses if r.status_code == 409)
        assert loser.json()["code"] in {"stale_decision", "decision_conflict"}
        winner = next(r for r in responses if r.status_code == 201).json()
        assert winner["sequence"] == round_number
        assert await _decision_count(app, finding_id) == round_number
        supersedes = winner["id"]

    assert len(await _audit(app, "decision.recorded", case_id)) == 2
    await _audit_ok(client, admin)


# SQLite begins every transaction with the write lock (control/db/engine.py), so two sessions
# cannot both read before either writes there: these interleavings exist on PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_decision_that_lost_the_race_is_refused(app, client, accounts):
    """Both sessions read the chain head before either commits: the database lets one win."""
    rad1, admin = accounts["rad1"], accounts["admin1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)
    user = AuthUser(uuid.UUID(rad1.id), "rad1", Role.RADIOLOGIST, "test-jti", 0)
    actor = Actor("rad1", "radiologist")
    factory = app.state.session_factory
    async with factory() as first, factory() as second:
        loaded = []
        for session in (first, second):
            case = await get_case(session, uuid.UUID(case_id), user, for_claim=True)
            finding = await review.get_finding(session, case, uuid.UUID(finding_id))
            assert review.current_decision(finding) is None
            loaded.append((case, finding))
        accept = DecisionRequest(DecisionAction.ACCEPT)
        await review.decide(first, *loaded[0], user, actor, accept)
        reject = DecisionRequest(DecisionAction.REJECT, reason="artefact")
        with pytest.raises(ConflictError) as caught:
            await review.decide(second, *loaded[1], user, actor, reject)
    assert caught.value.code == "decision_conflict"
    assert await _decision_count(app, finding_id) == 1
    assert len(await _audit(app, "decision.recorded", case_id)) == 1
    await _audit_ok(client, admin)


# SQLite begins every transaction with the write lock (control/db/engine.py), so two sessions
# cannot both read before either writes there: these interleavings exist on PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_writes_racing_a_sign_off_are_refused(app, client, accounts):
    """Sessions that loaded the case before it was signed off cannot decide or sign it off."""
    rad1, admin = accounts["rad1"], accounts["admin1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)
    first = await _decided(client, rad1, case_id, finding_id, action="accept")
    user = AuthUser(uuid.UUID(rad1.id), "rad1", Role.RADIOLOGIST, "test-jti", 0)
    actor = Actor("rad1", "radiologist")
    factory = app.state.session_factory
    async with factory() as signer, factory() as decider, factory() as second_signer:
        cases = [
            await get_case(session, uuid.UUID(case_id), user, for_claim=True)
            for session in (signer, decider, second_signer)
        ]
        finding = await review.get_finding(decider, cases[1], uuid.UUID(finding_id))
        await workflow.sign_off(signer, cases[0], user, actor, version=cases[0].version, note=None)
        edit = DecisionRequest(
            DecisionAction.REJECT, reason="second look", supersedes=uuid.UUID(first["id"])
        )
        with pytest.raises(ConflictError) as caught:
            await review.decide(decider, cases[1], finding, user, actor, edit)
        assert caught.value.code == "decision_conflict"
        with pytest.raises(ConflictError) as caught:
            await workflow.sign_off(
                second_signer, cases[2], user, actor, version=cases[2].version, note="again"
            )
        assert caught.value.code == "decision_conflict"
    assert await _decision_count(app, finding_id) == 1
    assert len(await _audit(app, "case.signed_off", case_id)) == 1
    case = await _case(client, admin, case_id)
    assert case["status"] == "signed_off" and case["sign_off_note"] is None
    await _audit_ok(client, admin)


# ---------------------------------------------------------------------------------------------
# Segmentation edits
# ---------------------------------------------------------------------------------------------


async def test_mask_edits_are_validated_and_leave_nothing_behind_when_refused(
    app, client, accounts
):
    rad1, rad2 = accounts["rad1"], accounts["rad2"]
    store = app.state.store
    case_id, finding_id = await _segmentation_case(app, client, accounts)
    masks = f"derived/cases/{case_id}/masks/"
    good = np.zeros(SEG_SHAPE, dtype=np.uint8)
    good[1:4, 1:4, 1:3] = 2  # 18 voxels of edema
    good[2:4, 2:4, 1:2] = 1  # 4 of them necrotic core
    good[6, 6, 4] = 3  # 1 enhancing voxel

    # Not the holder: refused before anything is stored.
    _error(
        await _upload_mask(client, rad1, case_id, finding_id, label_map_nifti(good)),
        403,
        "not_case_holder",
    )
    await _claim(client, rad1, case_id)
    _error(
        await _upload_mask(client, rad2, case_id, finding_id, label_map_nifti(good)),
        403,
        "not_case_holder",
    )

    body = _error(
        await _upload_mask(
            client, rad1, case_id, finding_id, label_map_nifti(np.zeros((8, 8, 5), np.uint8))
        ),
        400,
        "mask_shape_mismatch",
    )
    assert body["detail"] == {"expected": list(SEG_SHAPE), "got": [8, 8, 5]}
    out_of_range = good.copy()
    out_of_range[0, 0, 0] = 4
    _error(
        await _upload_mask(client, rad1, case_id, finding_id, label_map_nifti(out_of_range)),
        400,
        "invalid_mask",
    )
    fractional = good.astype(np.float32)
    fractional[0, 0, 0] = 0.5
    _error(
        await _upload_mask(client, rad1, case_id, finding_id, label_map_nifti(fractional)),
        400,
        "invalid_mask",
    )
    _error(
        await _upload_mask(client, rad1, case_id, finding_id, b"not a nifti file"),
        400,
        "invalid_mask",
    )
    # A gzip bomb: the header declares the segmentation's grid, the stream inflates to 64 MB.
    raw = nib.Nifti1Image(good, np.diag([*SEG_ZOOMS, 1.0])).to_bytes()
    bomb = gzip.compress(raw + bytes(64 * 1024 * 1024), compresslevel=9, mtime=0)
    assert len(bomb) < 200_000
    body = _error(await _upload_mask(client, rad1, case_id, finding_id, bomb), 400, "invalid_mask")
    assert body["detail"] == {"reason": "corrupt_nifti"}
    huge = nib.Nifti1Header()
    huge.set_data_dtype(np.uint8)
    huge.set_data_shape((4096, 4096, 4096))  # the header alone: 64 GiB declared
    huge["vox_offset"] = 352
    _error(
        await _upload_mask(
            client, rad1, case_id, finding_id, gzip.compress(huge.binaryblock + bytes(4096))
        ),
        413,
        "volume_too_large",
    )
    response = await client.post(
        f"/api/cases/{case_id}/findings/{finding_id}/mask",
        files={"file": ("mask.nii.gz", label_map_nifti(good), "application/gzip")},
        data={"reason": "   "},
        headers=rad1.headers,
    )
    _error(response, 400, "reason_required")
    _error(
        await _decide(client, rad1, case_id, finding_id, action="edit", reason="smaller"),
        400,
        "mask_required",
    )
    assert await store.list_keys(masks) == []
    assert await _decision_count(app, finding_id) == 0

    response = await _upload_mask(
        client, rad1, case_id, finding_id, label_map_nifti(good, compress=False)
    )
    assert response.status_code == 201, response.text
    edit = response.json()
    assert (edit["action"], edit["sequence"], edit["labels"]) == ("edit", 1, None)
    assert edit["reason"] == "tumour extends further"
    assert edit["volumes_ml"] == {
        "enhancing_tumour": pytest.approx(1 * VOXEL_ML, abs=1e-3),
        "tumour_core": pytest.approx(5 * VOXEL_ML, abs=1e-3),
        "whole_tumour": pytest.approx(19 * VOXEL_ML, abs=1e-3),
    }
    [key] = await store.list_keys(masks)
    stored = await store.get(key)
    assert hashlib.sha256(stored).hexdigest() == edit["mask_sha256"]
    image = nib.Nifti1Image.from_bytes(gzip.decompress(stored))
    assert np.array_equal(np.asarray(image.dataobj), good)
    assert image.header.get_zooms() == pytest.approx(SEG_ZOOMS)
    async with app.state.session_factory() as session:
        decision = await session.get(Decision, uuid.UUID(edit["id"]))
        assert decision is not None and decision.mask_key == key

    # A valid mask whose decision is refused (stale) is deleted again.
    _error(
        await _upload_mask(client, rad1, case_id, finding_id, label_map_nifti(good)),
        409,
        "stale_decision",
    )
    assert await store.list_keys(masks) == [key]
    response = await _upload_mask(
        client, rad1, case_id, finding_id, label_map_nifti(good), supersedes=edit["id"]
    )
    assert response.status_code == 201, response.text
    assert response.json()["supersedes_id"] == edit["id"]
    assert len(await store.list_keys(masks)) == 2


async def test_only_segmentations_take_a_mask(app, client, accounts):
    rad1 = accounts["rad1"]
    case_id, [finding_id] = await _dx_case(app, client, accounts)
    await _claim(client, rad1, case_id)
    mask = label_map_nifti(np.zeros(SEG_SHAPE, np.uint8))
    _error(await _upload_mask(client, rad1, case_id, finding_id, mask), 400, "not_a_segmentation")
    assert await app.state.store.list_keys(f"derived/cases/{case_id}/") == []


# ---------------------------------------------------------------------------------------------
# Sign-off
# ---------------------------------------------------------------------------------------------


async def test_sign_off_needs_every_decision_and_makes_the_case_read_only(app, client, accounts):
    rad1, admin = accounts["rad1"], accounts["admin1"]
    case_id, finding_ids = await _dx_case(app, client, accounts, findings=2)
    version = (await _case(client, admin, case_id))["version"]
    _error(await _sign_off(client, rad1, case_id, version), 403, "not_case_holder")
    _error(await _sign_off(client, admin, case_id, version), 403, "permission_denied")
    await _claim(client, rad1, case_id)

    version = (await _case(client, rad1, case_id))["version"]
    _error(await _sign_off(client, rad1, case_id, version - 1), 409, "stale_version")
    body = _error(await _sign_off(client, rad1, case_id, version), 409, "decisions_missing")
    assert sorted(body["detail"]["finding_ids"]) == sorted(finding_ids)

    accepted = await _decided(client, rad1, case_id, finding_ids[0], action="accept")
    version = (await _case(client, rad1, case_id))["version"]
    body = _error(await _sign_off(client, rad1, case_id, version), 409, "decisions_missing")
    assert body["detail"]["finding_ids"] == [finding_ids[1]]
    rejected = await _decided(
        client, rad1, case_id, finding_ids[1], action="reject", reason="artefact"
    )

    version = (await _case(client, rad1, case_id))["version"]
    response = await _sign_off(client, rad1, case_id, version, note=" reviewed ")
    assert response.status_code == 200, response.text
    signed = response.json()
    assert signed["status"] == "signed_off"
    assert signed["sign_off_note"] == "reviewed"
    assert signed["signed_off_at"] is not None
    assert signed["version"] > version

    # Read-only from now on.
    _error(
        await _decide(
            client,
            rad1,
            case_id,
            finding_ids[0],
            action="reject",
            reason="late",
            supersedes=accepted["id"],
        ),
        409,
        "case_signed_off",
    )
    _error(await _sign_off(client, rad1, case_id, signed["version"]), 409, "case_signed_off")
    response = await client.patch(
        f"/api/cases/{case_id}",
        json={"version": signed["version"], "priority": "stat"},
        headers=admin.headers,
    )
    _error(response, 409, "case_signed_off")
    case = await _case(client, admin, case_id)
    assert (case["status"], case["priority"]) == ("signed_off", "routine")
    assert await _decision_count(app, finding_ids[0]) == 1

    [entry] = await _audit(app, "case.signed_off", case_id)
    assert entry.actor == "rad1"
    assert json.loads(entry.details) == {
        "decisions": {finding_ids[0]: accepted["id"], finding_ids[1]: rejected["id"]},
        "note": "reviewed",
    }
    assert len(await _audit(app, "decision.recorded", case_id)) == 2
    actions = [e["action"] for e in case["history"]]
    assert "case.signed_off" in actions and "decision.recorded" in actions
    await _audit_ok(client, admin)


async def test_a_queued_case_cannot_be_signed_off(app, client, accounts):
    rad1 = accounts["rad1"]
    body = await upload(client, accounts["pacs1"], ("chest.dcm", chest_dx(64)))
    [case_id] = body["case_ids"]
    await _claim(client, rad1, case_id)
    case = await _case(client, rad1, case_id)
    assert case["status"] == "queued"
    _error(await _sign_off(client, rad1, case_id, case["version"]), 409, "inference_pending")
    assert (await _case(client, rad1, case_id))["status"] == "queued"


async def test_a_no_model_case_is_signed_off_without_findings(app, client, accounts):
    rad1, admin = accounts["rad1"], accounts["admin1"]
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    body = await upload(client, accounts["pacs1"], ("ct.dcm", ct))
    [case_id] = body["case_ids"]
    version = (await _case(client, admin, case_id))["version"]
    _error(await _sign_off(client, rad1, case_id, version), 403, "not_case_holder")
    await _claim(client, rad1, case_id)
    case = await _case(client, rad1, case_id)
    assert (case["status"], case["findings"]) == ("received", [])
    assert "no_model" in case["flags"]

    response = await _sign_off(client, rad1, case_id, case["version"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "signed_off"
    [entry] = await _audit(app, "case.signed_off", case_id)
    assert json.loads(entry.details) == {"decisions": {}, "note": None}
    await _audit_ok(client, admin)


async def test_a_received_case_with_a_model_is_not_readable_yet(app, client, accounts):
    """A case that was routed but not yet queued (``received`` without ``no_model``)."""
    rad1 = accounts["rad1"]
    case_id, _ = await _dx_case(app, client, accounts)
    async with app.state.session_factory() as session:
        await session.execute(
            update(Case).where(Case.id == uuid.UUID(case_id)).values(status=CaseStatus.RECEIVED)
        )
        await session.commit()
    await _claim(client, rad1, case_id)
    version = (await _case(client, rad1, case_id))["version"]
    _error(await _sign_off(client, rad1, case_id, version), 409, "inference_pending")
