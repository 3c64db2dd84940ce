"""The database job queue: claims, leases, retries with backoff, failure, priority, admin retry.

Every test runs on the real database, SQLite and PostgreSQL; concurrent claimers need
PostgreSQL's ``SKIP LOCKED``. No Triton: tests play the worker's part with the queue API.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from control.config import Settings
from control.db.models import (
    PRIORITY_RANK,
    AuditEntry,
    Case,
    CaseStatus,
    InferenceJob,
    JobStatus,
    Priority,
    Study,
)
from control.domain.audit.chain import SYSTEM
from control.domain.jobs import queue
from control.domain.jobs.queue import ClaimedJob, backoff_s
from tests.conftest import SECRET
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import upload

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


async def _queued_case(
    app, settings: Settings, priority: Priority = Priority.ROUTINE, pipeline: str = "cxr"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new study and case, enqueued directly; the case id and the job id."""
    async with app.state.session_factory() as session:
        study = Study(study_uid=f"2.25.{uuid.uuid4().int}", pseudo_patient_id="p", series=[])
        session.add(study)
        await session.flush()
        case = Case(
            study_id=study.id,
            status=CaseStatus.RECEIVED,
            modality="DX",
            flags=["no_model"],
            priority=priority,
            priority_rank=PRIORITY_RANK[priority],
        )
        session.add(case)
        await session.flush()
        job = await queue.enqueue(session, case, pipeline, settings, SYSTEM)
        assert job is not None
        await session.commit()
        return case.id, job.id


async def _job(app, job_id: uuid.UUID) -> InferenceJob:
    async with app.state.session_factory() as session:
        job = await session.get(InferenceJob, job_id)
        assert job is not None
        return job


async def _case(app, case_id: uuid.UUID) -> Case:
    async with app.state.session_factory() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case


async def _set_job(app, job_id: uuid.UUID, **values) -> None:
    async with app.state.session_factory() as session:
        await session.execute(
            update(InferenceJob).where(InferenceJob.id == job_id).values(**values)
        )
        await session.commit()


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


async def _claim(app, worker: str, settings: Settings) -> ClaimedJob | None:
    return await queue.claim(app.state.session_factory, worker, settings)


async def _retry_or_fail(
    app, claimed: ClaimedJob, worker: str, settings: Settings, *, retryable: bool = True
) -> JobStatus | None:
    return await queue.give_up_or_retry(
        app.state.session_factory,
        claimed,
        worker,
        code="triton_unavailable",
        reason="Triton did not answer",
        retryable=retryable,
        settings=settings,
    )


# ---------------------------------------------------------------------------------------------
# Enqueue
# ---------------------------------------------------------------------------------------------


async def test_enqueue_queues_the_case_once(app, client, settings):
    case_id, job_id = await _queued_case(app, settings)
    case = await _case(app, case_id)
    assert (case.status, case.pipeline, case.flags) == (CaseStatus.QUEUED, "cxr", [])
    job = await _job(app, job_id)
    assert (job.status, job.attempts, job.max_attempts) == (
        JobStatus.PENDING,
        0,
        settings.job_max_attempts,
    )
    async with app.state.session_factory() as session:
        case = await session.get(Case, case_id)
        assert await queue.enqueue(session, case, "cxr", settings, SYSTEM) is None
        case.status = CaseStatus.SIGNED_OFF
        await session.execute(
            update(InferenceJob).where(InferenceJob.id == job_id).values(status=JobStatus.FAILED)
        )
        assert await queue.enqueue(session, case, "cxr", settings, SYSTEM) is None
        await session.rollback()


# ---------------------------------------------------------------------------------------------
# Claims and leases
# ---------------------------------------------------------------------------------------------


async def test_claim_takes_the_job_and_holds_it_while_the_lease_is_valid(app, client, settings):
    case_id, job_id = await _queued_case(app, settings)
    before = datetime.now(UTC)
    claimed = await _claim(app, "w1", settings)
    assert claimed == ClaimedJob(job_id, case_id, "cxr", 1, settings.job_max_attempts)
    job = await _job(app, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.RUNNING, 1, "w1")
    assert job.lease_expires_at is not None
    lease = (job.lease_expires_at - before).total_seconds()
    assert settings.job_lease_s - 1 <= lease <= settings.job_lease_s + 5

    assert await _claim(app, "w2", settings) is None
    assert await _claim(app, "w1", settings) is None
    job = await _job(app, job_id)
    assert (job.attempts, job.lease_owner) == (1, "w1")


async def test_an_expired_lease_is_taken_over(app, client, settings):
    _, job_id = await _queued_case(app, settings)
    first = await _claim(app, "w1", settings)
    assert first is not None and first.attempt == 1
    assert await _claim(app, "w2", settings) is None
    await _set_job(app, job_id, lease_expires_at=_past())  # the lease runs out

    second = await _claim(app, "w2", settings)
    assert second is not None
    assert (second.id, second.attempt) == (job_id, 2)
    job = await _job(app, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.RUNNING, 2, "w2")

    # The first worker lost the job: it can neither renew nor record a failure.
    assert await queue.renew_lease(app.state.session_factory, job_id, "w1", 60) is False
    assert await _retry_or_fail(app, first, "w1", settings) is None
    assert await _retry_or_fail(app, first, "w1", settings, retryable=False) is None
    job = await _job(app, job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.RUNNING, 2, "w2")
    assert job.error_code is None
    assert (await _case(app, job.case_id)).status == CaseStatus.QUEUED


async def test_renew_lease_extends_only_the_owners_lease(app, client, settings):
    _, job_id = await _queued_case(app, settings)
    assert await _claim(app, "w1", settings) is not None
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await _set_job(app, job_id, lease_expires_at=soon)

    assert await queue.renew_lease(app.state.session_factory, job_id, "w2", 600) is False
    assert (await _job(app, job_id)).lease_expires_at == soon
    assert await queue.renew_lease(app.state.session_factory, job_id, "w1", 600) is True
    renewed = (await _job(app, job_id)).lease_expires_at
    assert renewed is not None and renewed > soon + timedelta(seconds=500)
    assert await queue.renew_lease(app.state.session_factory, uuid.uuid4(), "w1", 600) is False


async def test_renew_lease_is_refused_once_the_job_is_no_longer_running(app, client, settings):
    _, job_id = await _queued_case(app, settings)
    claimed = await _claim(app, "w1", settings)
    assert claimed is not None
    assert await _retry_or_fail(app, claimed, "w1", settings) == JobStatus.PENDING
    assert await queue.renew_lease(app.state.session_factory, job_id, "w1", 600) is False


# ---------------------------------------------------------------------------------------------
# Retries, backoff and failure
# ---------------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap():
    tuned = Settings(secret_key=SECRET, job_backoff_s=3.0, job_backoff_max_s=20.0)
    assert [backoff_s(attempt, tuned) for attempt in range(1, 6)] == [3.0, 6.0, 12.0, 20.0, 20.0]


async def test_a_retryable_failure_returns_the_job_after_a_backoff(app, client, settings):
    tuned = settings.model_copy(update={"job_backoff_s": 30.0, "job_backoff_max_s": 1000.0})
    case_id, job_id = await _queued_case(app, tuned)
    claimed = await _claim(app, "w1", tuned)
    assert claimed is not None

    before = datetime.now(UTC)
    assert await _retry_or_fail(app, claimed, "w1", tuned) == JobStatus.PENDING
    job = await _job(app, job_id)
    assert job.status == JobStatus.PENDING
    assert (job.error_code, job.last_error) == ("triton_unavailable", "Triton did not answer")
    assert job.lease_owner is None and job.lease_expires_at is None
    delay = (job.available_at - before).total_seconds()
    assert 29 <= delay <= 35
    assert (await _case(app, case_id)).status == CaseStatus.QUEUED

    # Not claimable until due.
    assert await _claim(app, "w2", tuned) is None
    await _set_job(app, job_id, available_at=_past())
    second = await _claim(app, "w2", tuned)
    assert second is not None and second.attempt == 2

    # The second failure waits twice as long.
    before = datetime.now(UTC)
    assert await _retry_or_fail(app, second, "w2", tuned) == JobStatus.PENDING
    delay = (((await _job(app, job_id)).available_at) - before).total_seconds()
    assert 59 <= delay <= 65


async def test_the_last_attempt_fails_the_job_and_the_case(app, client, settings, accounts):
    tuned = settings.model_copy(update={"job_max_attempts": 2})
    case_id, job_id = await _queued_case(app, tuned)
    first = await _claim(app, "w1", tuned)
    assert first is not None and first.max_attempts == 2
    assert await _retry_or_fail(app, first, "w1", tuned) == JobStatus.PENDING
    await _set_job(app, job_id, available_at=_past())
    second = await _claim(app, "w1", tuned)
    assert second is not None and second.attempt == 2

    assert await _retry_or_fail(app, second, "w1", tuned) == JobStatus.FAILED
    job = await _job(app, job_id)
    assert (job.status, job.attempts, job.error_code) == (JobStatus.FAILED, 2, "triton_unavailable")
    assert job.finished_at is not None and job.lease_owner is None
    case = await _case(app, case_id)
    assert case.status == CaseStatus.FAILED
    assert case.status_reason == "Triton did not answer"
    assert await _claim(app, "w1", tuned) is None

    response = await client.get(
        "/api/audit", params={"action": "inference.failed"}, headers=accounts["admin1"].headers
    )
    [entry] = response.json()
    assert (entry["target_id"], entry["outcome"], entry["actor"]) == (
        str(case_id),
        "failure",
        "system",
    )
    assert entry["details"]["job_id"] == str(job_id)
    assert entry["details"]["attempts"] == 2
    assert entry["details"]["code"] == "triton_unavailable"


async def test_a_permanent_failure_fails_at_once(app, client, settings):
    case_id, job_id = await _queued_case(app, settings)
    claimed = await _claim(app, "w1", settings)
    assert claimed is not None
    assert await _retry_or_fail(app, claimed, "w1", settings, retryable=False) == JobStatus.FAILED
    job = await _job(app, job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert (await _case(app, case_id)).status == CaseStatus.FAILED


async def test_a_lost_worker_on_the_last_attempt_fails_the_job(app, client, settings):
    tuned = settings.model_copy(update={"job_max_attempts": 1})
    case_id, job_id = await _queued_case(app, tuned)
    other_case, other_job = await _queued_case(app, tuned)
    claimed = await _claim(app, "w1", tuned)
    assert claimed is not None and claimed.id == job_id
    await _set_job(app, job_id, lease_expires_at=_past())

    # The expired job is failed, and the claim goes on to the next due job.
    next_claim = await _claim(app, "w2", tuned)
    assert next_claim is not None and next_claim.id == other_job
    job = await _job(app, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "worker_lost")
    case = await _case(app, case_id)
    assert case.status == CaseStatus.FAILED and "attempt 1" in (case.status_reason or "")
    assert (await _case(app, other_case)).status == CaseStatus.QUEUED


# ---------------------------------------------------------------------------------------------
# Priority and concurrency
# ---------------------------------------------------------------------------------------------


async def test_urgent_cases_are_claimed_first_then_the_oldest(app, client, settings):
    _, routine_old = await _queued_case(app, settings, Priority.ROUTINE)
    _, routine_new = await _queued_case(app, settings, Priority.ROUTINE)
    _, urgent = await _queued_case(app, settings, Priority.URGENT)
    _, stat = await _queued_case(app, settings, Priority.STAT)
    now = datetime.now(UTC)
    await _set_job(app, routine_old, available_at=now - timedelta(seconds=30))
    await _set_job(app, routine_new, available_at=now - timedelta(seconds=20))
    await _set_job(app, urgent, available_at=now - timedelta(seconds=10))
    await _set_job(app, stat, available_at=now - timedelta(seconds=1))

    order = []
    while (claimed := await _claim(app, "w1", settings)) is not None:
        order.append(claimed.id)
    assert order == [stat, urgent, routine_old, routine_new]


# Several workers are a PostgreSQL feature (SKIP LOCKED); SQLite runs one worker.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_concurrent_claimers_take_every_job_exactly_once(app, client, settings):
    assert settings.is_postgres
    jobs = {(await _queued_case(app, settings))[1] for _ in range(20)}

    async def claimer(name: str) -> list[uuid.UUID]:
        taken = []
        while (claimed := await _claim(app, name, settings)) is not None:
            taken.append(claimed.id)
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    claimed = [job_id for taken in results for job_id in taken]
    assert sorted(claimed) == sorted(jobs)
    assert len(set(claimed)) == 20
    async with app.state.session_factory() as session:
        rows = (await session.scalars(select(InferenceJob))).all()
    assert {(row.status, row.attempts) for row in rows} == {(JobStatus.RUNNING, 1)}
    owners = {row.id: row.lease_owner for row in rows}
    for index, taken in enumerate(results):
        assert all(owners[job_id] == f"w{index}" for job_id in taken)


# ---------------------------------------------------------------------------------------------
# Admin retry API
# ---------------------------------------------------------------------------------------------


async def _version(client, admin, case_id: str) -> int:
    response = await client.get(f"/api/cases/{case_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


async def test_admin_retries_a_failed_case(app, client, settings, accounts):
    admin, rad1 = accounts["admin1"], accounts["rad1"]
    body = await upload(client, accounts["pacs1"], ("chest.dcm", chest_dx(64)))
    [case_id] = body["case_ids"]
    url = f"/api/cases/{case_id}/retry"

    version = await _version(client, admin, case_id)
    response = await client.post(url, json={"version": version}, headers=admin.headers)
    assert response.status_code == 409 and response.json()["code"] == "case_not_failed"
    response = await client.post(url, json={"version": version}, headers=rad1.headers)
    assert response.status_code == 403

    claimed = await _claim(app, "w1", settings)
    assert claimed is not None and str(claimed.case_id) == case_id
    assert await _retry_or_fail(app, claimed, "w1", settings, retryable=False) == JobStatus.FAILED

    stale = version
    version = await _version(client, admin, case_id)
    assert version != stale
    response = await client.post(url, json={"version": stale}, headers=admin.headers)
    assert response.status_code == 409 and response.json()["code"] == "stale_version"

    response = await client.post(url, json={"version": version}, headers=admin.headers)
    assert response.status_code == 200, response.text
    case = response.json()
    assert (case["status"], case["pipeline"], case["status_reason"]) == ("queued", "cxr", None)
    assert case["version"] > version

    async with app.state.session_factory() as session:
        jobs = (
            await session.scalars(
                select(InferenceJob)
                .where(InferenceJob.case_id == uuid.UUID(case_id))
                .order_by(InferenceJob.created_at)
            )
        ).all()
        queued = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "inference.queued", AuditEntry.target_id == case_id
                )
            )
        ).all()
    assert [(job.status, job.attempts) for job in jobs] == [
        (JobStatus.FAILED, 1),
        (JobStatus.PENDING, 0),
    ]
    assert [entry.actor for entry in queued] == ["pacs1", "admin1"]
    again = await _claim(app, "w2", settings)
    assert again is not None and again.id == jobs[1].id and again.attempt == 1

    response = await client.post(url, json={"version": case["version"]}, headers=admin.headers)
    assert response.status_code == 409 and response.json()["code"] == "case_not_failed"
