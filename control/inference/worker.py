"""The job worker: claims inference jobs, runs their pipeline on Triton, stores the findings.

Execution is at-least-once (a job whose worker died is run again) and the result write is
idempotent: findings are unique per (job, subject), the job is marked done in the same
transaction, and a worker that finds the job already done discards its own results. So a
job's findings and its ``inference.completed`` audit entries are written exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import lazyload

from control.config import Settings
from control.db.models import (
    Case,
    CaseStatus,
    Finding,
    InferenceJob,
    Instance,
    JobStatus,
    Series,
    Study,
)
from control.domain.audit import chain
from control.domain.audit.chain import SYSTEM
from control.domain.jobs import queue
from control.domain.jobs.queue import ClaimedJob
from control.domain.jobs.scheduling import schedule_case
from control.domain.jobs.wakeup import listen_for_jobs
from control.errors import InvalidInputError, MedVisionError, NotFoundError
from control.observability.jobs import job_span, results_span
from control.results.jobs import enqueue_case_exports
from control.results.sending import ExportSender
from control.served.base import FindingDraft, Job, Route, RoutingRules
from control.served.registry import route_study, served_model
from control.storage import ObjectStore
from control.triton.client import InferenceBadInputError, TritonClient

logger = logging.getLogger("medvision.worker")

#: Errors that say the input itself is unusable: retrying cannot help.
_PERMANENT: tuple[type[Exception], ...] = (InferenceBadInputError, InvalidInputError, NotFoundError)


class Worker:
    """Runs jobs from the queue until stopped; safe to run several against PostgreSQL."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        *,
        worker_id: str | None = None,
        triton: TritonClient | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.store = store
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.triton = triton or TritonClient(
            settings.triton_url, timeout_s=settings.triton_timeout_s, retries=1
        )
        self.rules = RoutingRules.from_settings(settings)
        #: Result objects for the PACS destinations ride on the same worker loop.
        self.exports = ExportSender(settings, session_factory, store, self.worker_id)
        self._wakeup = asyncio.Event()

    def notify(self) -> None:
        """Look at the queue now instead of at the next poll (new work was queued)."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; sleeps ``worker_poll_s`` when idle."""
        logger.info("worker %s started", self.worker_id)
        listener = (
            asyncio.create_task(listen_for_jobs(self.settings, self.notify))
            if self.settings.is_postgres
            else None
        )
        try:
            try:
                await self.route_unrouted()
            except Exception:
                logger.exception("worker %s: routing unrouted cases failed", self.worker_id)
            while not stop.is_set():
                # Cleared before the claim: a wake-up that arrives during it is kept.
                self._wakeup.clear()
                try:
                    worked = await self.run_once() or await self.exports.run_once()
                except Exception:  # the database went away: keep the worker alive, try again
                    logger.exception("worker %s: claiming a job failed", self.worker_id)
                    worked = False
                if worked:
                    continue
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wakeup.wait()),
                ]
                await asyncio.wait(
                    waiters, timeout=self.settings.worker_poll_s, return_when="FIRST_COMPLETED"
                )
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await self.triton.close()
            logger.info("worker %s stopped", self.worker_id)

    async def route_unrouted(self) -> int:
        """Route received cases that were never routed (stored before routing existed);
        returns how many were queued. Cases already marked "no model" are not loaded."""
        never_routed = select(Case).where(
            Case.status == CaseStatus.RECEIVED,
            cast(Case.flags, String).not_like(f'%"{queue.NO_MODEL_FLAG}"%'),
        )
        queued = 0
        async with self.session_factory() as session:
            for case in (await session.scalars(never_routed)).unique().all():
                job = await schedule_case(session, case, case.study, self.settings, SYSTEM)
                queued += job is not None
            await session.commit()
        return queued

    async def run_once(self) -> bool:
        """Run one due job if there is one; False when the queue had nothing due."""
        taken = await queue.claim_and_load(
            self.session_factory, self.worker_id, self.settings, self.load_job
        )
        if taken is None:
            return False
        claimed, loaded = taken
        logger.info(
            "worker %s: job %s (%s, case %s, attempt %d/%d)",
            self.worker_id,
            claimed.id,
            claimed.pipeline,
            claimed.case_id,
            claimed.attempt,
            claimed.max_attempts,
        )
        # The job's span continues the trace of the upload that queued it (docs/monitoring.md).
        with job_span(claimed, claimed.trace_context) as observed:
            done = asyncio.Event()
            heartbeat = asyncio.create_task(self._keep_lease(claimed, done))
            try:
                drafts = await self._execute(claimed, loaded)
            except Exception as exc:
                failure: Exception | None = exc
            else:
                failure = None
            finally:  # cancelled too: no lease renewals for a job nobody runs
                await self._stop_heartbeat(done, heartbeat)
            if failure is None and loaded is not None:
                models = [(d.model.model_name, d.model.model_version) for d in drafts]
                try:
                    with results_span(claimed, models):
                        stored = await self.complete(claimed, drafts, loaded)
                except Exception as exc:  # the database failed: the attempt is retried
                    failure = exc
                else:
                    observed.outcome = "done" if stored else "discarded"
            if failure is not None:
                status = await self._record_failure(claimed, failure)
                observed.outcome = status.value if status else "taken_over"
                if status == JobStatus.PENDING:
                    observed.outcome = "retry"
        return True

    @staticmethod
    async def _stop_heartbeat(done: asyncio.Event, heartbeat: asyncio.Task[None]) -> None:
        # Never cancelled mid-renewal: a cancelled SQLite BEGIN IMMEDIATE that later gets the
        # lock would leave a pooled connection holding the write lock.
        done.set()
        await heartbeat

    async def _keep_lease(self, claimed: ClaimedJob, done: asyncio.Event) -> None:
        interval = max(self.settings.job_lease_s / 3, 0.2)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), interval)
                return
            try:
                await queue.renew_lease(
                    self.session_factory, claimed.id, self.worker_id, self.settings.job_lease_s
                )
            except Exception:
                logger.warning(
                    "worker %s: could not renew the lease of %s", self.worker_id, claimed.id
                )

    async def load_job(self, session: AsyncSession, claimed: ClaimedJob) -> LoadedJob | None:
        """The job's case (study, series, instances), its route and what already has a
        finding, read in the claim's transaction; None when the case no longer exists."""
        case = await session.get(Case, claimed.case_id)  # study, series, instances loaded
        if case is None:
            return None
        return LoadedJob(
            case=case,
            route=route_study(case.study, self.rules),
            inferred=await queue.inferred_subjects(session, case.id),
        )

    async def _execute(self, claimed: ClaimedJob, loaded: LoadedJob | None) -> list[FindingDraft]:
        # Loaded with the claim: no connection is held while Triton works.
        if loaded is None:
            raise NotFoundError(f"case {claimed.case_id} no longer exists", code="case_not_found")
        route = loaded.route
        if route.pipeline != claimed.pipeline:
            raise InvalidInputError(
                f"the study no longer fits the {claimed.pipeline} pipeline: {route.reason}",
                code="route_changed",
            )
        route = route.without(loaded.inferred)  # a follow-up job reads only the new images
        if route.pipeline is None:
            return []
        job = Job(
            loaded.case, claimed.id, route, self.store, self.triton, self.settings.triton_timeout_s
        )
        return await served_model(claimed.pipeline).run(job)

    async def _record_failure(self, claimed: ClaimedJob, exc: Exception) -> JobStatus | None:
        if isinstance(exc, MedVisionError):
            code, reason = exc.code, exc.message
        else:
            code, reason = "internal_error", f"{type(exc).__name__}: {exc}"
            logger.error("worker %s: job %s crashed", self.worker_id, claimed.id, exc_info=exc)
        # Triton or storage unavailable, timeouts, model errors: worth another attempt.
        retryable = not isinstance(exc, _PERMANENT)
        status = await queue.give_up_or_retry(
            self.session_factory,
            claimed,
            self.worker_id,
            code=code,
            reason=reason,
            retryable=retryable,
            settings=self.settings,
        )
        logger.warning(
            "worker %s: job %s attempt %d failed (%s: %s) -> %s",
            self.worker_id,
            claimed.id,
            claimed.attempt,
            code,
            reason,
            status.value if status else "taken over",
        )
        return status

    async def complete(
        self, claimed: ClaimedJob, drafts: list[FindingDraft], loaded: LoadedJob
    ) -> bool:
        """Write the findings and mark the job done, once; False if another run already did.

        Images of the case stored while the job ran get a follow-up job in the same
        transaction. ``loaded``: what the job read when it was claimed.
        """
        async with self.session_factory() as session:
            job = await session.get(InferenceJob, claimed.id, with_for_update=True)
            if job is None or job.status in (JobStatus.DONE, JobStatus.FAILED):
                await session.rollback()
                return False
            # The study's rows are read only if images arrived while the job ran.
            case = await session.get(
                Case, claimed.case_id, options=[lazyload(Case.study), lazyload(Case.assignee)]
            )
            if case is None:
                await session.rollback()
                return False
            findings = [_finding(case.id, claimed.id, draft) for draft in drafts]
            session.add_all(findings)
            await session.flush()
            now = datetime.now(UTC)
            job.status = JobStatus.DONE
            job.finished_at = now
            job.lease_owner = None
            job.lease_expires_at = None
            job.error_code = None
            job.last_error = None
            if case.status in (CaseStatus.QUEUED, CaseStatus.FAILED, CaseStatus.RECEIVED):
                case.status = CaseStatus.INFERRED
                case.status_reason = None
            for finding, draft in zip(findings, drafts, strict=True):
                await chain.append(
                    session,
                    "inference.completed",
                    SYSTEM,
                    target_type="case",
                    target_id=str(case.id),
                    details={
                        "job_id": str(claimed.id),
                        "finding_id": str(finding.id),
                        "attempt": claimed.attempt,
                        "worker": self.worker_id,
                        "model": draft.model.model_name,
                        "network": draft.model.network_name,
                        "model_version": draft.model.model_version,
                        "training_run_id": draft.model.training_run_id,
                        "synthetic_model": draft.model.synthetic,
                        "input_sha256": draft.input_sha256,
                        "output_sha256": draft.output_sha256,
                        "latency_ms": draft.latency_ms,
                    },
                )
            # Images stored while this job ran get a follow-up job.
            if await _study_instances(session, case.study_id) > loaded.instances:
                study = await session.get(Study, case.study_id)
                if study is not None:
                    await schedule_case(session, case, study, self.settings, SYSTEM)
            if self.settings.results_preliminary_sr:
                # An unverified chest X-ray SR for the PACS now, before anyone read the case.
                await enqueue_case_exports(
                    session, case, findings, self.settings, SYSTEM, preliminary=True
                )
            try:
                await session.commit()
            except IntegrityError:  # another run of the same job committed first
                await session.rollback()
                return False
        return True


@dataclass(frozen=True)
class LoadedJob:
    """What a claimed job reads, loaded with its claim."""

    case: Case
    route: Route
    #: Subjects of the case that already had a finding.
    inferred: set[str]

    @property
    def instances(self) -> int:
        """How many instances the study had when the job was claimed: more at completion
        means images arrived meanwhile (the loaded rows are not refreshed afterwards)."""
        return sum(len(series.instances) for series in self.case.study.series)


async def _study_instances(session: AsyncSession, study_id: uuid.UUID) -> int:
    """How many instances ``study`` has now (this transaction included)."""
    count = await session.scalar(
        select(func.count(Instance.id)).join(Series).where(Series.study_id == study_id)
    )
    return int(count or 0)


def _finding(case_id: uuid.UUID, job_id: uuid.UUID, draft: FindingDraft) -> Finding:
    return Finding(
        id=uuid.uuid4(),
        case_id=case_id,
        job_id=job_id,
        subject=draft.subject,
        instance_id=draft.instance_id,
        kind=draft.kind,
        model_name=draft.model.model_name,
        network_name=draft.model.network_name,
        model_version=draft.model.model_version,
        training_run_id=draft.model.training_run_id,
        synthetic_model=draft.model.synthetic,
        labels=draft.labels,
        probabilities=draft.probabilities,
        thresholds=draft.thresholds,
        volumes_ml=draft.volumes_ml,
        artifacts=draft.artifacts,
        input_sha256=draft.input_sha256,
        output_sha256=draft.output_sha256,
        latency_ms=draft.latency_ms,
        input_stats=draft.input_stats,
        decisions=[],
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """A standalone worker process's main loop (``medvision worker``)."""
    from control.db.engine import create_engine, create_session_factory
    from control.observability.endpoint import serve_process_metrics
    from control.observability.tracing import configure_tracing
    from control.storage import build_store

    # Its own metrics port and traces (docs/monitoring.md): the API's /metrics is elsewhere.
    if settings.worker_metrics_port:
        serve_process_metrics(settings.worker_metrics_port)
    configure_tracing("medvision-worker")
    engine = create_engine(settings)
    try:
        worker = Worker(settings, create_session_factory(engine), build_store(settings))
        await worker.run(stop)
    finally:
        await engine.dispose()
