"""The durable inference job queue, kept in the database (no extra service).

No maintained job-queue library runs on both SQLite and PostgreSQL (procrastinate and
PgQueuer are PostgreSQL-only, arq/saq need Redis), so the queue is this module: one table,
``inference_jobs``. A worker claims a job by setting a lease (PostgreSQL picks candidates
with ``SELECT … FOR UPDATE SKIP LOCKED`` so several workers never wait on each other; every
claim is also a compare-and-set ``UPDATE``, which is what keeps SQLite's single worker safe
from a second one started by mistake). A worker renews its lease while it runs; when a
worker dies, its lease expires and another worker takes the job again: execution is
at-least-once, and result writes are idempotent (see :mod:`control.inference.worker`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.leases import take_lease
from control.db.models import Case, CaseStatus, Finding, InferenceJob, JobStatus
from control.domain.audit import chain
from control.domain.audit.chain import SYSTEM, Actor
from control.domain.jobs.wakeup import announce_job

T = TypeVar("T")

NO_MODEL_FLAG = "no_model"
#: A case in review whose follow-up job failed: it stays with its holder, an admin may retry.
FOLLOW_UP_FAILED_FLAG = "follow_up_failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now holds, with the attempt number it is running."""

    id: uuid.UUID
    case_id: uuid.UUID
    pipeline: str
    attempt: int
    max_attempts: int
    #: The ``traceparent`` recorded when the job was queued (None: none recorded).
    trace_context: str | None = None


def backoff_s(attempt: int, settings: Settings) -> float:
    """Delay before retry number ``attempt`` (1-based): doubling from the base, capped."""
    return float(min(settings.job_backoff_s * 2 ** (attempt - 1), settings.job_backoff_max_s))


async def unfinished_job(session: AsyncSession, case_id: uuid.UUID) -> InferenceJob | None:
    """The case's pending or running job, if any (a case has at most one)."""
    job: InferenceJob | None = await session.scalar(
        select(InferenceJob)
        .where(
            InferenceJob.case_id == case_id,
            InferenceJob.status.in_((JobStatus.PENDING, JobStatus.RUNNING)),
        )
        .limit(1)
    )
    return job


async def inferred_subjects(session: AsyncSession, case_id: uuid.UUID) -> set[str]:
    """The subjects (instance ids, ``volume``) that already have a finding in the case."""
    return set(await session.scalars(select(Finding.subject).where(Finding.case_id == case_id)))


async def lock_case(session: AsyncSession, case_id: uuid.UUID) -> None:
    """Hold the case's row until the transaction ends (PostgreSQL; SQLite's transactions
    hold the database's write lock anyway), so that deciding whether the case needs a job
    and finishing its job never interleave."""
    await session.execute(select(Case.id).where(Case.id == case_id).with_for_update())


async def enqueue(
    session: AsyncSession,
    case: Case,
    pipeline: str,
    settings: Settings,
    actor: Actor,
    *,
    settle_s: float = 0.0,
    new_case: bool = False,
) -> InferenceJob | None:
    """Queue ``case`` for ``pipeline`` inside the caller's transaction.

    Returns None (and changes nothing) when the case is signed off or already has a pending
    or running job: a pending job reads the case's images when it runs, and a running one
    queues a follow-up for images that arrived meanwhile (see
    :func:`control.domain.jobs.scheduling.schedule_case`).

    With ``settle_s`` the job is due that long from now, and a new image pushes a waiting
    job's start back again: a series arriving image by image is read once, whole.
    ``new_case``: the case was inserted by this transaction (it has no job yet).
    """
    if case.status == CaseStatus.SIGNED_OFF:
        return None
    waiting = None if new_case else await unfinished_job(session, case.id)
    if waiting is not None:
        if settle_s > 0 and waiting.status == JobStatus.PENDING and waiting.attempts == 0:
            waiting.available_at = max(waiting.available_at, utcnow() + timedelta(seconds=settle_s))
        return None
    job = InferenceJob(
        id=uuid.uuid4(),  # chosen here: the audit entry names it before any flush
        case_id=case.id,
        pipeline=pipeline,
        status=JobStatus.PENDING,
        attempts=0,
        max_attempts=settings.job_max_attempts,
        available_at=utcnow() + timedelta(seconds=settle_s),
    )
    session.add(job)
    if case.status != CaseStatus.IN_REVIEW:  # a case in review stays with its holder
        case.status = CaseStatus.QUEUED
    case.pipeline = pipeline
    case.status_reason = None
    case.flags = [f for f in case.flags if f not in (NO_MODEL_FLAG, FOLLOW_UP_FAILED_FLAG)]
    await announce_job(session, settings)
    await chain.append(
        session,
        "inference.queued",
        actor,
        target_type="case",
        target_id=str(case.id),
        details={"job_id": str(job.id), "pipeline": pipeline},
    )
    return job


def mark_no_model(case: Case, reason: str) -> None:
    """Show ``case`` on the worklist as one no model can read, with why."""
    if NO_MODEL_FLAG not in case.flags:
        case.flags = [*case.flags, NO_MODEL_FLAG]
    case.status_reason = reason


async def claim(
    session_factory: async_sessionmaker[AsyncSession], worker_id: str, settings: Settings
) -> ClaimedJob | None:
    """Take the most urgent job that is due (or whose worker's lease expired), or None.

    A job whose lease expired after its last allowed attempt is failed instead of retaken.
    """
    claimed = await claim_and_load(session_factory, worker_id, settings, _nothing)
    return None if claimed is None else claimed[0]


async def _nothing(_session: AsyncSession, _claimed: ClaimedJob) -> None:
    return None


async def claim_and_load(
    session_factory: async_sessionmaker[AsyncSession],
    worker_id: str,
    settings: Settings,
    load: Callable[[AsyncSession, ClaimedJob], Awaitable[T]],
) -> tuple[ClaimedJob, T] | None:
    """:func:`claim`, and what ``load`` reads for the job, in the claim's one transaction.

    The lease and what was loaded are consistent with each other; if ``load`` raises, the
    claim is rolled back (the job stays due) and the error propagates.
    """
    async with session_factory() as session:
        while True:
            now = utcnow()
            due = or_(
                and_(InferenceJob.status == JobStatus.PENDING, InferenceJob.available_at <= now),
                and_(InferenceJob.status == JobStatus.RUNNING, InferenceJob.lease_expires_at < now),
            )
            job = await session.scalar(
                select(InferenceJob)
                .join(Case, Case.id == InferenceJob.case_id)
                .where(due)
                .order_by(Case.priority_rank, InferenceJob.available_at)
                .limit(1)
                .with_for_update(skip_locked=True, of=InferenceJob)
            )
            if job is None:
                await session.rollback()
                return None
            if job.status == JobStatus.RUNNING and job.attempts >= job.max_attempts:
                await _fail(
                    session,
                    job,
                    "worker_lost",
                    f"the worker running attempt {job.attempts} stopped and no attempts remain",
                )
                await session.commit()
                continue
            if not await take_lease(
                session, job, JobStatus.RUNNING, worker_id, settings.job_lease_s, now
            ):
                continue
            claimed = ClaimedJob(
                job.id,
                job.case_id,
                job.pipeline,
                job.attempts + 1,
                job.max_attempts,
                job.trace_context,
            )
            loaded = await load(session, claimed)
            await session.commit()
            return claimed, loaded


async def renew_lease(
    session_factory: async_sessionmaker[AsyncSession],
    job_id: uuid.UUID,
    worker_id: str,
    lease_s: float,
) -> bool:
    """Extend this worker's lease on a running job; False when the job is no longer its own."""
    async with session_factory() as session:
        result = await session.execute(
            update(InferenceJob)
            .where(
                InferenceJob.id == job_id,
                InferenceJob.status == JobStatus.RUNNING,
                InferenceJob.lease_owner == worker_id,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        await session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _fail(session: AsyncSession, job: InferenceJob, code: str, reason: str) -> None:
    job.status = JobStatus.FAILED
    job.error_code = code
    job.last_error = reason
    job.finished_at = utcnow()
    job.lease_owner = None
    job.lease_expires_at = None
    case = await session.get(Case, job.case_id)
    if case is not None and case.status == CaseStatus.IN_REVIEW:
        # A follow-up job (images stored after the case was inferred) failed: the case stays
        # with its holder, who sees the reason; the images without a finding stay so.
        if FOLLOW_UP_FAILED_FLAG not in case.flags:
            case.flags = [*case.flags, FOLLOW_UP_FAILED_FLAG]
        case.status_reason = reason
    elif case is not None and case.status != CaseStatus.SIGNED_OFF:
        case.status = CaseStatus.FAILED
        case.status_reason = reason
    await chain.append(
        session,
        "inference.failed",
        SYSTEM,
        target_type="case",
        target_id=str(job.case_id),
        outcome="failure",
        details={"job_id": str(job.id), "attempts": job.attempts, "code": code, "reason": reason},
    )


async def give_up_or_retry(
    session_factory: async_sessionmaker[AsyncSession],
    claimed: ClaimedJob,
    worker_id: str,
    *,
    code: str,
    reason: str,
    retryable: bool,
    settings: Settings,
) -> JobStatus | None:
    """Record a failed attempt: back to pending after a backoff, or failed for good.

    Nothing changes (None) if the job is no longer this worker's (its lease expired and
    another worker took it over).
    """
    async with session_factory() as session:
        job = await session.get(InferenceJob, claimed.id, with_for_update=True)
        if job is None or job.status != JobStatus.RUNNING or job.lease_owner != worker_id:
            await session.rollback()
            return None
        if retryable and job.attempts < job.max_attempts:
            job.status = JobStatus.PENDING
            job.error_code = code
            job.last_error = reason
            job.lease_owner = None
            job.lease_expires_at = None
            job.available_at = utcnow() + timedelta(seconds=backoff_s(job.attempts, settings))
        else:
            await _fail(session, job, code, reason)
        status = job.status
        await session.commit()
        return status
