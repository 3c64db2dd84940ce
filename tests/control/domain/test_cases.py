"""Cases and the worklist: ingest creates cases, filters, paging, sorting, assignment, claims,
radiologist visibility, audit entries and optimistic concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from functools import cache
from io import BytesIO

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import make_account


@cache
def _testdata(name: str) -> bytes:
    with open(get_testdata_file(name), "rb") as handle:
        return handle.read()


def _dicom(
    source: str = "CT_small.dcm",
    *,
    modality: str | None = None,
    study_uid: str | None = None,
    patient_id: str | None = None,
) -> bytes:
    """A copy of a pydicom test file made into a new instance (and, by default, a new study)."""
    dataset = pydicom.dcmread(BytesIO(_testdata(source)))
    dataset.StudyInstanceUID = study_uid or generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientID = patient_id or uuid.uuid4().hex[:16]
    if modality:
        dataset.Modality = modality
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def _upload(client, account, *blobs: bytes, expected: int = 201) -> dict:
    files = [("files", (f"file{index}.dcm", blob)) for index, blob in enumerate(blobs)]
    response = await client.post("/api/studies", files=files, headers=account.headers)
    assert response.status_code == expected, response.text
    return response.json()


async def _new_cases(client, account, *modalities: str) -> list[str]:
    """One new single-instance study (and so one case) per modality; their case ids in order."""
    ids = []
    for modality in modalities:
        source = "MR_small.dcm" if modality == "MR" else "CT_small.dcm"
        body = await _upload(client, account, _dicom(source, modality=modality))
        ids.extend(body["case_ids"])
    return ids


async def _worklist(client, account, expected: int = 200, **params) -> dict:
    response = await client.get("/api/cases", params=params, headers=account.headers)
    assert response.status_code == expected, response.text
    return response.json()


async def _ids(client, account, **params) -> list[str]:
    return [item["id"] for item in (await _worklist(client, account, **params))["items"]]


async def _case(client, account, case_id: str) -> dict:
    response = await client.get(f"/api/cases/{case_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _patch(client, account, case_id: str, body: dict):
    return await client.patch(f"/api/cases/{case_id}", json=body, headers=account.headers)


async def _assign(client, admin, case_id: str, assignee_id: str | None) -> dict:
    version = (await _case(client, admin, case_id))["version"]
    response = await _patch(
        client, admin, case_id, {"version": version, "assignee_id": assignee_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _audit(client, admin, action: str) -> list[dict]:
    response = await client.get("/api/audit", params={"action": action}, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _assert_chain_ok(client, admin) -> None:
    response = await client.get("/api/audit/verify", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True, response.json()


# --- ingest ----------------------------------------------------------------------------------


async def test_each_uploaded_study_becomes_one_received_case(client, accounts):
    admin, pacs = accounts["admin1"], accounts["pacs1"]
    shared_study = generate_uid()
    first = _dicom("CT_small.dcm", study_uid=shared_study, patient_id="P1")
    second = _dicom("CT_small.dcm", study_uid=shared_study, patient_id="P1")
    body = await _upload(client, admin, first, second, _testdata("MR_small.dcm"))
    assert len(body["studies"]) == 2
    assert len(set(body["case_ids"])) == 2
    by_study = {study["study_id"]: study for study in body["studies"]}
    assert sorted(s["new_instances"] for s in by_study.values()) == [1, 2]
    assert all(study["created"] for study in body["studies"])

    body = await _upload(client, pacs, _testdata("CT_small.dcm"))
    assert len(body["case_ids"]) == 1

    page = await _worklist(client, admin)
    assert page["total"] == 3
    assert {item["status"] for item in page["items"]} == {"received"}
    assert {item["modality"] for item in page["items"]} == {"CT", "MR"}
    assert all(item["assignee"] is None for item in page["items"])
    assert all(item["priority"] == "routine" for item in page["items"])
    shared = next(item for item in page["items"] if item["study"]["instance_count"] == 2)
    assert shared["study"]["series_count"] == 2


async def test_reupload_is_idempotent(client, accounts):
    admin, pacs = accounts["admin1"], accounts["pacs1"]
    blob = _dicom("CT_small.dcm")
    created = await _upload(client, admin, blob, expected=201)
    again = await _upload(client, pacs, blob, expected=200)
    assert again["case_ids"] == created["case_ids"]
    assert again["study_ids"] == created["study_ids"]
    assert again["studies"][0]["created"] is False
    assert again["studies"][0]["new_instances"] == 0
    assert again["studies"][0]["existing_instances"] == 1
    # A further instance of the same study joins the same case.
    study_uid = pydicom.dcmread(BytesIO(blob)).StudyInstanceUID
    more = await _upload(client, admin, _dicom("CT_small.dcm", study_uid=study_uid), expected=201)
    assert more["case_ids"] == created["case_ids"]
    assert (await _worklist(client, admin))["total"] == 1
    assert len(await _audit(client, admin, "study.ingested")) == 2


# --- worklist filters, paging and sorting ----------------------------------------------------


async def test_worklist_filters(client, accounts):
    admin, rad1 = accounts["admin1"], accounts["rad1"]
    ct1, ct2, mr1, cr1 = await _new_cases(client, admin, "CT", "CT", "MR", "CR")
    await _assign(client, admin, ct2, rad1.id)
    version = (await _case(client, admin, mr1))["version"]
    response = await _patch(client, admin, mr1, {"version": version, "priority": "stat"})
    assert response.status_code == 200, response.text

    everything = {ct1, ct2, mr1, cr1}
    # The chest radiograph was routed to the cxr pipeline at ingest; the others have no model.
    assert set(await _ids(client, admin, status="received")) == {ct1, ct2, mr1}
    assert set(await _ids(client, admin, status="queued")) == {cr1}
    assert await _ids(client, admin, status="signed_off") == []
    assert set(await _ids(client, admin, status=["queued", "received"])) == everything
    assert (await _worklist(client, admin, expected=400, status="nonsense"))["code"]

    assert set(await _ids(client, admin, modality="CT")) == {ct1, ct2}
    assert set(await _ids(client, admin, modality="ct")) == {ct1, ct2}
    assert await _ids(client, admin, modality="CR") == [cr1]
    assert await _ids(client, admin, modality="US") == []

    assert await _ids(client, admin, priority="stat") == [mr1]
    assert set(await _ids(client, admin, priority="routine")) == {ct1, ct2, cr1}
    assert (await _worklist(client, admin, expected=400, priority="asap"))["code"]

    assert await _ids(client, admin, assignee=rad1.id) == [ct2]
    assert await _ids(client, admin, assignee=accounts["rad2"].id) == []
    assert set(await _ids(client, admin, assignee="unassigned")) == {ct1, mr1, cr1}
    assert await _ids(client, admin, assignee="me") == []
    assert await _ids(client, rad1, assignee="me") == [ct2]
    bad = await _worklist(client, admin, expected=400, assignee="someone")
    assert bad["code"] == "invalid_filter"

    # Dates from the cases themselves: the test may run across midnight UTC.
    received = sorted(item["created_at"][:10] for item in (await _worklist(client, admin))["items"])
    first, last = date.fromisoformat(received[0]), date.fromisoformat(received[-1])
    assert set(await _ids(client, admin, received_from=first.isoformat())) == everything
    assert set(await _ids(client, admin, received_to=last.isoformat())) == everything
    tomorrow, yesterday = last + timedelta(days=1), first - timedelta(days=1)
    assert await _ids(client, admin, received_from=tomorrow.isoformat()) == []
    assert await _ids(client, admin, received_to=yesterday.isoformat()) == []
    window = {"received_from": yesterday.isoformat(), "received_to": tomorrow.isoformat()}
    assert set(await _ids(client, admin, **window)) == everything
    assert (await _worklist(client, admin, expected=400, received_from="last week"))["code"]

    combined = await _worklist(client, admin, modality="CT", assignee="unassigned")
    assert [item["id"] for item in combined["items"]] == [ct1]
    assert combined["total"] == 1


async def test_worklist_pagination(client, accounts):
    admin = accounts["admin1"]
    created = await _new_cases(client, admin, "CT", "MR", "CT", "CR", "MR")
    pages = [await _worklist(client, admin, limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    assert {page["total"] for page in pages} == {5}
    assert [(page["limit"], page["offset"]) for page in pages] == [(2, 0), (2, 2), (2, 4), (2, 6)]
    seen = [item["id"] for page in pages for item in page["items"]]
    assert sorted(seen) == sorted(created)
    assert len((await _worklist(client, admin))["items"]) == 5
    assert (await _worklist(client, admin, limit=200))["total"] == 5
    for params in ({"limit": 201}, {"limit": 0}, {"offset": -1}, {"limit": "many"}):
        body = await _worklist(client, admin, expected=400, **params)
        assert body["code"] == "validation_failed", params


async def test_worklist_sorting(client, accounts):
    admin = accounts["admin1"]
    created = await _new_cases(client, admin, "MR", "CT", "CR", "MR")
    assert await _ids(client, admin, sort="created_at") == created
    assert await _ids(client, admin, sort="created_at", order="asc") == created
    assert await _ids(client, admin, sort="created_at", order="desc") == created[::-1]

    modalities = [
        item["modality"] for item in (await _worklist(client, admin, sort="modality"))["items"]
    ]
    assert modalities == ["CR", "CT", "MR", "MR"]
    descending = await _worklist(client, admin, sort="modality", order="desc")
    assert [item["modality"] for item in descending["items"]] == ["MR", "MR", "CT", "CR"]

    # All routine: priority order falls back to arrival order.
    assert await _ids(client, admin) == created
    for case_id, priority in ((created[3], "urgent"), (created[2], "stat")):
        version = (await _case(client, admin, case_id))["version"]
        response = await _patch(client, admin, case_id, {"version": version, "priority": priority})
        assert response.status_code == 200, response.text
        assert response.json()["priority"] == priority
    by_priority = [created[2], created[3], created[0], created[1]]
    assert await _ids(client, admin) == by_priority
    assert await _ids(client, admin, sort="priority", order="asc") == by_priority
    assert await _ids(client, admin, sort="priority", order="desc") == [
        created[0],
        created[1],
        created[3],
        created[2],
    ]
    assert (await _worklist(client, admin, expected=400, sort="patient_name"))["code"]
    assert (await _worklist(client, admin, expected=400, order="sideways"))["code"]


async def test_priority_change_moves_the_case_first(client, accounts):
    admin, rad1 = accounts["admin1"], accounts["rad1"]
    first, second, last = await _new_cases(client, admin, "CT", "CT", "CT")
    assert await _ids(client, rad1) == [first, second, last]
    case = await _case(client, admin, last)
    response = await _patch(client, admin, last, {"version": case["version"], "priority": "urgent"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == case["version"] + 1
    assert await _ids(client, rad1) == [last, first, second]
    case = await _case(client, admin, second)
    response = await _patch(client, admin, second, {"version": case["version"], "priority": "stat"})
    assert response.status_code == 200, response.text
    assert await _ids(client, rad1) == [second, last, first]
    updates = await _audit(client, admin, "case.updated")
    assert [(e["target_id"], e["details"]["priority_to"]) for e in updates] == [
        (last, "urgent"),
        (second, "stat"),
    ]
    await _assert_chain_ok(client, admin)


# --- assignment ------------------------------------------------------------------------------


async def test_admin_assigns_reassigns_and_unassigns(client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    (case_id,) = await _new_cases(client, admin, "CT")
    start = await _case(client, admin, case_id)

    assigned = await _assign(client, admin, case_id, rad1.id)
    assert assigned["assignee"] == {"id": rad1.id, "username": "rad1"}
    assert assigned["version"] == start["version"] + 1
    reassigned = await _assign(client, admin, case_id, rad2.id)
    assert reassigned["assignee"] == {"id": rad2.id, "username": "rad2"}
    assert reassigned["version"] == start["version"] + 2
    unassigned = await _assign(client, admin, case_id, None)
    assert unassigned["assignee"] is None
    assert unassigned["version"] == start["version"] + 3
    assert (await _case(client, admin, case_id))["assignee"] is None

    entries = await _audit(client, admin, "case.assigned")
    assert [(e["details"]["assignee_from"], e["details"]["assignee_to"]) for e in entries] == [
        (None, rad1.id),
        (rad1.id, rad2.id),
        (rad2.id, None),
    ]
    assert {(e["actor"], e["actor_role"], e["target_type"], e["target_id"]) for e in entries} == {
        ("admin1", "admin", "case", case_id)
    }
    await _assert_chain_ok(client, admin)


async def test_assignment_rejects_bad_requests(app, client, accounts):
    admin, rad1 = accounts["admin1"], accounts["rad1"]
    (case_id,) = await _new_cases(client, admin, "CT")
    version = (await _case(client, admin, case_id))["version"]

    for user in ("admin1", "pacs1", "mlops1"):
        response = await _patch(
            client, admin, case_id, {"version": version, "assignee_id": accounts[user].id}
        )
        assert response.status_code == 400, (user, response.text)
        assert response.json()["code"] == "invalid_assignee"
    response = await _patch(
        client, admin, case_id, {"version": version, "assignee_id": str(uuid.uuid4())}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_assignee"

    retired = await make_account(app, client, "rad9", "radiologist")
    response = await client.patch(
        f"/api/users/{retired.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    response = await _patch(client, admin, case_id, {"version": version, "assignee_id": retired.id})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_assignee"

    for body in (
        {"version": version, "assignee_id": rad1.id, "status": "signed_off"},
        {"version": version, "assignee": rad1.id},
        {"assignee_id": rad1.id},
        {"version": "one", "assignee_id": rad1.id},
        {"version": version, "assignee_id": "not-a-uuid"},
        {"version": version, "priority": "asap"},
    ):
        response = await _patch(client, admin, case_id, body)
        assert response.status_code == 400, (body, response.text)

    # Nothing above changed the case.
    unchanged = await _case(client, admin, case_id)
    assert unchanged["version"] == version
    assert unchanged["assignee"] is None
    assert await _audit(client, admin, "case.assigned") == []

    assert (await _assign(client, admin, case_id, rad1.id))["version"] == version + 1
    stale = await _patch(
        client, admin, case_id, {"version": version, "assignee_id": accounts["rad2"].id}
    )
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "stale_version"
    assert (await _case(client, admin, case_id))["assignee"]["id"] == rad1.id

    missing = await _patch(client, admin, str(uuid.uuid4()), {"version": 1, "assignee_id": None})
    assert missing.status_code == 404
    assert missing.json()["code"] == "case_not_found"


async def test_concurrent_assignments_with_the_same_version(app):
    """Two admins save the same version at once (or two radiologists claim one case): one
    wins, the other gets 409.

    Litestar's AsyncTestClient runs each request to completion through a blocking portal, so
    ``asyncio.gather`` on it would serialise the requests. An httpx ASGI transport in this
    event loop lets the two requests interleave for real.
    """
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        admin = await make_account(app, client, "admin1", "admin")
        rad1 = await make_account(app, client, "rad1", "radiologist")
        rad2 = await make_account(app, client, "rad2", "radiologist")
        for _ in range(3):
            (case_id,) = await _new_cases(client, admin, "CT")
            version = (await _case(client, admin, case_id))["version"]
            responses = await asyncio.gather(
                _patch(client, admin, case_id, {"version": version, "assignee_id": rad1.id}),
                _patch(client, admin, case_id, {"version": version, "assignee_id": rad2.id}),
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200, 409], [response.text for response in responses]
            winner = next(r.json() for r in responses if r.status_code == 200)
            loser = next(r.json() for r in responses if r.status_code == 409)
            assert loser["code"] in {"stale_version", "concurrent_update"}
            final = await _case(client, admin, case_id)
            assert final["assignee"] == winner["assignee"]
            assert final["version"] == version + 1
            entries = await _audit(client, admin, "case.assigned")
            assert [e["target_id"] for e in entries].count(case_id) == 1

        # Two radiologists claim the same pool case at once: one gets it.
        for _ in range(3):
            (case_id,) = await _new_cases(client, admin, "MR")
            responses = await asyncio.gather(
                client.post(f"/api/cases/{case_id}/claim", headers=rad1.headers),
                client.post(f"/api/cases/{case_id}/claim", headers=rad2.headers),
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200, 409], [response.text for response in responses]
            loser = next(r.json() for r in responses if r.status_code == 409)
            assert loser["code"] in {"case_already_assigned", "concurrent_update"}
            winner = next(r.json() for r in responses if r.status_code == 200)
            assert (await _case(client, admin, case_id))["assignee"] == winner["assignee"]
            entries = await _audit(client, admin, "case.assigned")
            assert [e["target_id"] for e in entries].count(case_id) == 1
        await _assert_chain_ok(client, admin)


# --- radiologists: visibility and claims -----------------------------------------------------


async def test_radiologists_see_the_pool_and_their_own_cases_only(client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    pool, mine, theirs = await _new_cases(client, admin, "CT", "MR", "CT")
    await _assign(client, admin, mine, rad1.id)
    await _assign(client, admin, theirs, rad2.id)

    page = await _worklist(client, rad1)
    assert {item["id"] for item in page["items"]} == {pool, mine}
    assert page["total"] == 2
    assert set(await _ids(client, rad2)) == {pool, theirs}
    assert set(await _ids(client, admin)) == {pool, mine, theirs}
    assert await _ids(client, rad1, assignee=rad2.id) == []
    assert await _ids(client, rad1, assignee="unassigned") == [pool]
    assert await _ids(client, rad1, assignee="me") == [mine]
    assert (await _worklist(client, rad1, modality="CT"))["total"] == 1

    assert (await _case(client, rad1, pool))["id"] == pool
    detail = await _case(client, rad1, mine)
    assert detail["assignee"]["id"] == rad1.id
    assert detail["series"] and detail["series"][0]["instances"]
    hidden = await client.get(f"/api/cases/{theirs}", headers=rad1.headers)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "case_not_found"
    # The study behind rad2's case is hidden from rad1 too.
    study_id = (await _case(client, admin, theirs))["study"]["id"]
    study = await client.get(f"/api/studies/{study_id}", headers=rad1.headers)
    assert study.status_code == 404

    # A radiologist cannot reassign, even a case they can see.
    version = (await _case(client, rad1, mine))["version"]
    response = await _patch(client, rad1, mine, {"version": version, "assignee_id": rad2.id})
    assert response.status_code == 403


async def test_claim_takes_a_pool_case(client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    pool, other = await _new_cases(client, admin, "CT", "MR")
    before = await _case(client, rad1, pool)

    claimed = await client.post(f"/api/cases/{pool}/claim", headers=rad1.headers)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["assignee"] == {"id": rad1.id, "username": "rad1"}
    assert claimed.json()["version"] == before["version"] + 1
    assert await _ids(client, rad1, assignee="me") == [pool]
    assert set(await _ids(client, rad2)) == {other}

    again = await client.post(f"/api/cases/{pool}/claim", headers=rad1.headers)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == before["version"] + 1

    taken = await client.post(f"/api/cases/{pool}/claim", headers=rad2.headers)
    assert taken.status_code == 409, taken.text
    assert taken.json()["code"] == "case_already_assigned"
    assert (await _case(client, admin, pool))["assignee"]["id"] == rad1.id

    missing = await client.post(f"/api/cases/{uuid.uuid4()}/claim", headers=rad1.headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "case_not_found"

    entries = await _audit(client, admin, "case.assigned")
    assert len(entries) == 1
    assert entries[0]["actor"] == "rad1"
    assert entries[0]["target_id"] == pool
    assert entries[0]["details"] == {"assignee_from": None, "assignee_to": rad1.id, "claimed": True}
    await _assert_chain_ok(client, admin)


async def test_claim_then_admin_reassignment_uses_the_new_version(client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    (case_id,) = await _new_cases(client, admin, "CT")
    loaded = await _case(client, admin, case_id)
    claimed = await client.post(f"/api/cases/{case_id}/claim", headers=rad1.headers)
    assert claimed.status_code == 200
    stale = await _patch(
        client, admin, case_id, {"version": loaded["version"], "assignee_id": rad2.id}
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_version"
    assert stale.json()["detail"]["current_version"] == claimed.json()["version"]
    moved = await _assign(client, admin, case_id, rad2.id)
    assert moved["assignee"]["id"] == rad2.id
    hidden = await client.get(f"/api/cases/{case_id}", headers=rad1.headers)
    assert hidden.status_code == 404


# --- audit -----------------------------------------------------------------------------------


async def test_every_case_view_and_assignment_is_audited(client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    first, second = await _new_cases(client, admin, "CT", "MR")
    assert await _audit(client, admin, "study.viewed") == []

    await _case(client, admin, first)
    await _case(client, rad1, first)
    await _case(client, rad1, first)
    await _case(client, rad2, second)
    denied = await client.get(f"/api/cases/{uuid.uuid4()}", headers=rad1.headers)
    assert denied.status_code == 404

    views = await _audit(client, admin, "study.viewed")
    assert [(e["actor"], e["details"]["case_id"]) for e in views] == [
        ("admin1", first),
        ("rad1", first),
        ("rad1", first),
        ("rad2", second),
    ]
    items = (await _worklist(client, admin))["items"]
    studies = {item["id"]: item["study"]["id"] for item in items}
    assert all(e["target_type"] == "study" for e in views)
    assert [e["target_id"] for e in views] == [
        studies[first],
        studies[first],
        studies[first],
        studies[second],
    ]
    assert all(e["request_id"] for e in views)

    views_before = len(views)
    await _assign(client, admin, first, rad1.id)  # loads the case: one more view
    await _assign(client, admin, first, rad2.id)  # and another
    await _assign(client, admin, first, None)
    claimed = await client.post(f"/api/cases/{second}/claim", headers=rad1.headers)
    assert claimed.status_code == 200
    assigned = await _audit(client, admin, "case.assigned")
    assert [(e["actor"], e["target_id"], e["details"]["assignee_to"]) for e in assigned] == [
        ("admin1", first, rad1.id),
        ("admin1", first, rad2.id),
        ("admin1", first, None),
        ("rad1", second, rad1.id),
    ]
    assert len(await _audit(client, admin, "study.viewed")) == views_before + 3
    await _assert_chain_ok(client, admin)


@pytest.mark.parametrize("role", ["pacs1", "mlops1"])
async def test_worklist_is_closed_to_other_roles(client, accounts, role):
    response = await client.get("/api/cases", headers=accounts[role].headers)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
