"""Images that arrive after a case was inferred get findings of their own from a follow-up job.

No Triton: the tests play the worker's part with the queue API and ``Worker.complete`` (the
findings a pipeline would have produced); the real pipeline's side is in
``tests/e2e/test_inference_review.py``. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.models import AuditEntry, Case, CaseStatus, FindingKind, InferenceJob, Instance
from control.db.models import JobStatus as Job
from control.domain.jobs import queue
from control.domain.jobs.queue import ClaimedJob
from control.inference.worker import LoadedJob, Worker
from control.served.base import FindingDraft, ModelInfo
from control.storage import build_store
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import upload

MODEL = ModelInfo("cxr", "cxr_net", "test-1", None, synthetic=True)


@pytest.fixture
async def worker(client, settings: Settings) -> AsyncIterator[Worker]:
    """A worker with its own engine (the app's belongs to the test client's loop)."""
    engine = create_engine(settings)
    worker = Worker(settings, create_session_factory(engine), build_store(settings))
    try:
        yield worker
    finally:
        await worker.triton.close()
        await engine.dispose()


def _draft(instance: Instance) -> FindingDraft:
    """The finding a CXR pipeline run would write for ``instance``."""
    return FindingDraft(
        subject=str(instance.id),
        kind=FindingKind.CLASSIFICATION,
        model=MODEL,
        instance_id=instance.id,
        probabilities={"Effusion": 0.8},
        input_sha256="a" * 64,
        output_sha256="b" * 64,
        latency_ms=1.0,
    )


async def _instances(worker: Worker, case_id: uuid.UUID) -> list[Instance]:
    """The case's instances in the order they were stored."""
    async with worker.session_factory() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        instances = [i for series in case.study.series for i in series.instances]
        return sorted(instances, key=lambda instance: instance.created_at)


async def _jobs(worker: Worker, case_id: uuid.UUID) -> list[InferenceJob]:
    async with worker.session_factory() as session:
        query = select(InferenceJob).where(InferenceJob.case_id == case_id)
        return list((await session.scalars(query.order_by(InferenceJob.created_at))).all())


async def _claim(worker: Worker) -> tuple[ClaimedJob, LoadedJob]:
    """The due job, claimed the way the worker claims it, with what it loaded."""
    taken = await queue.claim_and_load(
        worker.session_factory, worker.worker_id, worker.settings, worker.load_job
    )
    assert taken is not None
    claimed, loaded = taken
    assert loaded is not None
    return claimed, loaded


async def _run_job(worker: Worker, case_id: uuid.UUID, *instances: Instance) -> None:
    """Claim the case's due job and complete it with findings for ``instances``."""
    claimed, loaded = await _claim(worker)
    assert claimed.case_id == case_id
    assert await worker.complete(claimed, [_draft(instance) for instance in instances], loaded)


async def _case(client, account, case_id: uuid.UUID) -> dict:
    response = await client.get(f"/api/cases/{case_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    case: dict = response.json()
    return case


async def test_an_image_stored_while_the_job_ran_gets_a_follow_up_job(client, accounts, worker):
    pacs, study_uid = accounts["pacs1"], generate_uid()
    first = await upload(client, pacs, ("pa.dcm", chest_dx(64, seed=1, study_uid=study_uid)))
    assert first["studies"][0]["inference_queued"] is True
    case_id = uuid.UUID(first["case_ids"][0])
    claimed, loaded = await _claim(worker)
    assert claimed.case_id == case_id
    assert [str(i.id) for i in loaded.route.instances] == loaded.route.subjects  # the PA only

    lateral_file = chest_dx(64, seed=2, study_uid=study_uid)
    second = await upload(client, pacs, ("lateral.dcm", lateral_file))
    assert second["case_ids"] == first["case_ids"]
    assert second["studies"][0]["inference_queued"] is False  # a job is running already
    assert len(await _jobs(worker, case_id)) == 1

    # The running job had read the PA view only; completing it queues the lateral view.
    pa, lateral = await _instances(worker, case_id)
    assert await worker.complete(claimed, [_draft(pa)], loaded)
    first_job, follow_up = await _jobs(worker, case_id)
    assert (first_job.status, follow_up.status) == (Job.DONE, Job.PENDING)
    assert (await _case(client, accounts["rad1"], case_id))["status"] == "queued"
    async with worker.session_factory() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target_id == str(case_id))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions[-2:] == ["inference.completed", "inference.queued"]

    await _run_job(worker, case_id, lateral)
    case = await _case(client, accounts["rad1"], case_id)
    assert case["status"] == "inferred"
    assert sorted(f["subject"] for f in case["findings"]) == sorted([str(pa.id), str(lateral.id)])
    assert [job.status for job in await _jobs(worker, case_id)] == [Job.DONE, Job.DONE]

    # The same image again changes nothing and queues nothing.
    again = await upload(client, pacs, ("lateral.dcm", lateral_file), expected=200)
    assert again["studies"][0]["inference_queued"] is False
    assert len(await _jobs(worker, case_id)) == 2


async def test_a_case_in_review_stays_with_its_holder_while_new_images_are_inferred(
    client, accounts, worker
):
    pacs, rad1, study_uid = accounts["pacs1"], accounts["rad1"], generate_uid()
    first = await upload(client, pacs, ("pa.dcm", chest_dx(64, seed=1, study_uid=study_uid)))
    case_id = uuid.UUID(first["case_ids"][0])
    [pa] = await _instances(worker, case_id)
    await _run_job(worker, case_id, pa)
    response = await client.post(f"/api/cases/{case_id}/claim", headers=rad1.headers)
    assert response.status_code == 200, response.text
    [pa_finding] = (await _case(client, rad1, case_id))["findings"]
    decisions = f"/api/cases/{case_id}/findings/{{}}/decisions"
    response = await client.post(
        decisions.format(pa_finding["id"]), json={"action": "accept"}, headers=rad1.headers
    )
    assert response.status_code == 201, response.text

    second = await upload(client, pacs, ("lateral.dcm", chest_dx(64, seed=2, study_uid=study_uid)))
    assert second["studies"][0]["inference_queued"] is True
    case = await _case(client, rad1, case_id)
    assert case["status"] == "in_review" and case["assignee"]["username"] == "rad1"

    async def sign_off() -> object:
        version = (await _case(client, rad1, case_id))["version"]
        return await client.post(
            f"/api/cases/{case_id}/sign-off", json={"version": version}, headers=rad1.headers
        )

    response = await sign_off()
    assert response.status_code == 409 and response.json()["code"] == "inference_pending"

    _, lateral = await _instances(worker, case_id)
    await _run_job(worker, case_id, lateral)
    case = await _case(client, rad1, case_id)
    assert case["status"] == "in_review" and len(case["findings"]) == 2
    response = await sign_off()
    assert response.status_code == 409 and response.json()["code"] == "decisions_missing"
    [lateral_finding] = [f for f in case["findings"] if f["subject"] == str(lateral.id)]
    assert response.json()["detail"]["finding_ids"] == [lateral_finding["id"]]
    response = await client.post(
        decisions.format(lateral_finding["id"]), json={"action": "accept"}, headers=rad1.headers
    )
    assert response.status_code == 201, response.text
    response = await sign_off()
    assert response.status_code == 200, response.text
    async with worker.session_factory() as session:
        assert (await session.get(Case, case_id)).status == CaseStatus.SIGNED_OFF


async def test_a_failed_follow_up_leaves_the_case_in_review_with_its_holder(
    client, accounts, worker
):
    pacs, rad1, admin, study_uid = (
        accounts["pacs1"],
        accounts["rad1"],
        accounts["admin1"],
        generate_uid(),
    )
    first = await upload(client, pacs, ("pa.dcm", chest_dx(64, seed=1, study_uid=study_uid)))
    case_id = uuid.UUID(first["case_ids"][0])
    [pa] = await _instances(worker, case_id)
    await _run_job(worker, case_id, pa)
    response = await client.post(f"/api/cases/{case_id}/claim", headers=rad1.headers)
    assert response.status_code == 200, response.text
    [pa_finding] = (await _case(client, rad1, case_id))["findings"]
    response = await client.post(
        f"/api/cases/{case_id}/findings/{pa_finding['id']}/decisions",
        json={"action": "accept"},
        headers=rad1.headers,
    )
    assert response.status_code == 201, response.text  # the case is now in review
    await upload(client, pacs, ("lateral.dcm", chest_dx(64, seed=2, study_uid=study_uid)))

    claimed = await queue.claim(worker.session_factory, worker.worker_id, worker.settings)
    assert claimed is not None and claimed.case_id == case_id
    status = await queue.give_up_or_retry(
        worker.session_factory,
        claimed,
        worker.worker_id,
        code="inference_bad_input",
        reason="Triton refused the image",
        retryable=False,
        settings=worker.settings,
    )
    assert status == Job.FAILED
    case = await _case(client, rad1, case_id)
    assert case["status"] == "in_review" and case["assignee"]["username"] == "rad1"
    assert "follow_up_failed" in case["flags"]
    assert case["status_reason"] == "Triton refused the image"

    # An admin retries it; the case stays in review, and the new finding joins it.
    response = await client.post(
        f"/api/cases/{case_id}/retry", json={"version": case["version"]}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    _, lateral = await _instances(worker, case_id)
    await _run_job(worker, case_id, lateral)
    case = await _case(client, rad1, case_id)
    assert case["status"] == "in_review" and len(case["findings"]) == 2
    assert "follow_up_failed" not in case["flags"] and case["status_reason"] is None
