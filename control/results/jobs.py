"""The result export queue: one durable job per (destination, result object).

Same design as the inference queue (:mod:`control.domain.jobs.queue`, which explains the
choice of a database table over a queue service): a worker claims a due export by a
compare-and-set ``UPDATE`` that sets its lease (PostgreSQL picks candidates with ``FOR
UPDATE SKIP LOCKED``), a failed attempt goes back to ``pending`` after an exponential
backoff, and an export whose worker died is taken again when its lease expires. Delivery is
at-least-once; it is idempotent at the PACS because every attempt sends the same object
under the same SOP Instance UID, fixed when the export is queued (:func:`result_uids`).

Exports are queued at sign-off, in the sign-off transaction (:func:`enqueue_case_exports`):
one per configured destination and result object — for a chest X-ray one SR per radiograph
finding, for a brain MRI a SEG and an SR. With no destination configured nothing is queued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.leases import take_lease
from control.db.models import (
    Case,
    ExportStatus,
    Finding,
    ResultExport,
    StudyLink,
)
from control.dicom.deid import pseudonymous_uid
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.jobs.queue import backoff_s
from control.domain.jobs.wakeup import announce_job
from control.errors import ConflictError
from control.results.objects import (
    BRATS_SEG,
    BRATS_SR,
    CXR_SR,
    CXR_SR_PRELIMINARY,
    OBJECT_KINDS,
)
from control.served.registry import served_model

__all__ = [
    "BRATS_SEG",
    "BRATS_SR",
    "CXR_SR",
    "CXR_SR_PRELIMINARY",
    "ClaimedExport",
    "PlannedObject",
    "claim",
    "enqueue_case_exports",
    "planned_objects",
    "requeue_failed",
    "result_uids",
]

NO_RECORD = "no_reidentification_record"


def utcnow() -> datetime:
    return datetime.now(UTC)


def result_uids(
    key: bytes, case_id: uuid.UUID, finding_id: uuid.UUID, name: str
) -> tuple[str, str]:
    """``(Series Instance UID, SOP Instance UID)`` of one result object, the same every time.

    Keyed ``2.25`` UIDs of (case, finding, object name): a retry, another worker or another
    destination gets the same UIDs, so a PACS that has the object already files no copy.
    """
    anchor = f"medvision-result\0{case_id}\0{finding_id}\0{name}"
    return pseudonymous_uid(anchor + "\0series", key), pseudonymous_uid(anchor + "\0sop", key)


@dataclass(frozen=True)
class PlannedObject:
    """A result object a case sends, or why it does not (``skip_reason``)."""

    finding_id: uuid.UUID
    name: str
    skip_reason: str | None = None

    @property
    def kind(self) -> str:
        return OBJECT_KINDS[self.name]


def planned_objects(findings: list[Finding], *, preliminary: bool = False) -> list[PlannedObject]:
    """The result objects of a case's findings, as each finding's model plans them
    (:mod:`control.results.objects`; ``preliminary``: before sign-off). An object planned
    with a skip reason (its image was removed, the segmentation rejected) is listed, not
    sent.
    """
    return [
        PlannedObject(finding.id, name, reason)
        for finding in findings
        for name, reason in served_model(finding.model_name).results(finding, preliminary)
    ]


async def has_record(session: AsyncSession, study_id: uuid.UUID) -> bool:
    """Whether the study has a re-identification record (DICOM studies ingested with one)."""
    sealed = await session.scalar(
        select(StudyLink.identity_encrypted).where(StudyLink.study_id == study_id)
    )
    return sealed is not None


async def enqueue_case_exports(
    session: AsyncSession,
    case: Case,
    findings: list[Finding],
    settings: Settings,
    actor: Actor,
    *,
    preliminary: bool = False,
) -> list[ResultExport]:
    """Queue one export per configured destination and result object of ``case``, inside the
    caller's transaction; returns the rows added (none without destinations).

    Objects that cannot be sent (a NIfTI study has no re-identification record, see
    :func:`planned_objects` for the others) are recorded as ``skipped`` with the reason.
    Queuing again is harmless: an export already queued for the same destination and SOP
    Instance UID is not added twice. Audited as ``result.exports_queued``.
    """
    destinations = settings.dicom_destinations
    if not destinations:
        return []
    objects = planned_objects(findings, preliminary=preliminary)
    if not objects:
        return []
    record = await has_record(session, case.study_id)
    key = settings.key("deid")
    now = utcnow()
    added: list[ResultExport] = []
    for planned in objects:
        series_uid, sop_uid = result_uids(key, case.id, planned.finding_id, planned.name)
        reason = planned.skip_reason or (None if record else NO_RECORD)
        for destination in destinations:
            exists = await session.scalar(
                select(ResultExport.id).where(
                    ResultExport.destination == destination.name,
                    ResultExport.sop_instance_uid == sop_uid,
                )
            )
            if exists is not None:
                continue
            export = ResultExport(
                case_id=case.id,
                finding_id=planned.finding_id,
                destination=destination.name,
                kind=planned.kind,
                object_name=planned.name,
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                status=ExportStatus.SKIPPED if reason else ExportStatus.PENDING,
                attempts=0,
                max_attempts=settings.result_send_max_attempts,
                available_at=now,
                error_code=reason,
            )
            session.add(export)
            added.append(export)
    if not added:
        return []
    await session.flush()
    await announce_job(session, settings)
    await chain.append(
        session,
        "result.exports_queued",
        actor,
        target_type="case",
        target_id=str(case.id),
        details={
            "exports": [
                {
                    "export_id": str(export.id),
                    "destination": export.destination,
                    "object": export.object_name,
                    "sop_instance_uid": export.sop_instance_uid,
                    "status": export.status.value,
                    "reason": export.error_code,
                }
                for export in added[:50]
            ],
            "count": len(added),
            "preliminary": preliminary,
        },
    )
    return added


@dataclass(frozen=True)
class ClaimedExport:
    """An export this worker now holds, with the attempt number it is running."""

    id: uuid.UUID
    case_id: uuid.UUID
    finding_id: uuid.UUID | None
    destination: str
    kind: str
    object_name: str
    series_instance_uid: str
    sop_instance_uid: str
    attempt: int
    max_attempts: int


async def claim(
    session_factory: async_sessionmaker[AsyncSession], worker_id: str, settings: Settings
) -> ClaimedExport | None:
    """Take the oldest due export (or one whose worker's lease expired), or None.

    An export whose lease expired after its last allowed attempt is failed
    (``worker_lost``) instead of retaken.
    """
    async with session_factory() as session:
        while True:
            now = utcnow()
            due = or_(
                and_(ResultExport.status == ExportStatus.PENDING, ResultExport.available_at <= now),
                and_(
                    ResultExport.status == ExportStatus.SENDING,
                    ResultExport.lease_expires_at < now,
                ),
            )
            export = await session.scalar(
                select(ResultExport)
                .where(due)
                .order_by(ResultExport.available_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if export is None:
                await session.rollback()
                return None
            if export.status == ExportStatus.SENDING and export.attempts >= export.max_attempts:
                export.status = ExportStatus.FAILED
                export.error_code = "worker_lost"
                export.last_error = "the worker sending the last attempt stopped"
                export.lease_owner = None
                export.lease_expires_at = None
                await session.commit()
                continue
            if not await take_lease(
                session, export, ExportStatus.SENDING, worker_id, settings.job_lease_s, now
            ):
                continue
            claimed = ClaimedExport(
                id=export.id,
                case_id=export.case_id,
                finding_id=export.finding_id,
                destination=export.destination,
                kind=export.kind,
                object_name=export.object_name,
                series_instance_uid=export.series_instance_uid,
                sop_instance_uid=export.sop_instance_uid,
                attempt=export.attempts + 1,
                max_attempts=export.max_attempts,
            )
            await session.commit()
            return claimed


async def renew_lease(
    session_factory: async_sessionmaker[AsyncSession],
    claimed: ClaimedExport,
    worker_id: str,
    lease_s: float,
) -> bool:
    """Extend this worker's lease on an export it is sending; False when it is no longer its
    own (the lease expired and another worker took it)."""
    async with session_factory() as session:
        result = await session.execute(
            update(ResultExport)
            .where(
                ResultExport.id == claimed.id,
                ResultExport.status == ExportStatus.SENDING,
                ResultExport.lease_owner == worker_id,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        await session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def held(
    session: AsyncSession, claimed: ClaimedExport, worker_id: str
) -> ResultExport | None:
    """The export row, locked, if this worker still holds it (else None: taken over)."""
    export = await session.get(ResultExport, claimed.id, with_for_update=True)
    if export is None or export.status != ExportStatus.SENDING or export.lease_owner != worker_id:
        return None
    return export


def mark_sent(export: ResultExport) -> None:
    """Record a successful delivery."""
    export.status = ExportStatus.SENT
    export.sent_at = utcnow()
    export.lease_owner = None
    export.lease_expires_at = None
    export.error_code = None
    export.last_error = None


def mark_failed_attempt(
    export: ResultExport, code: str, reason: str, *, retryable: bool, settings: Settings
) -> ExportStatus:
    """Record a failed attempt: pending again after the backoff, or failed for good."""
    export.error_code = code
    export.last_error = reason
    export.lease_owner = None
    export.lease_expires_at = None
    if retryable and export.attempts < export.max_attempts:
        export.status = ExportStatus.PENDING
        export.available_at = utcnow() + timedelta(seconds=backoff_s(export.attempts, settings))
    else:
        export.status = ExportStatus.FAILED
    return export.status


async def case_exports(session: AsyncSession, case_id: uuid.UUID) -> list[ResultExport]:
    """The case's exports, oldest first."""
    result = await session.scalars(
        select(ResultExport)
        .where(ResultExport.case_id == case_id)
        .order_by(ResultExport.created_at, ResultExport.destination, ResultExport.object_name)
    )
    return list(result.all())


async def requeue_failed(
    session: AsyncSession, case: Case, settings: Settings, actor: Actor
) -> list[ResultExport]:
    """Put the case's ``failed`` exports back in the queue (after a destination was fixed),
    with fresh attempts, inside the caller's transaction; audited ``result.exports_requeued``.

    They keep their SOP Instance UIDs: a PACS that stored an object before answering with a
    failure gets the same instance again. 409 ``no_failed_exports`` when none failed.
    """
    failed = [
        export
        for export in await case_exports(session, case.id)
        if export.status == ExportStatus.FAILED
    ]
    if not failed:
        raise ConflictError("the case has no failed export to send again", code="no_failed_exports")
    now = utcnow()
    for export in failed:
        export.status = ExportStatus.PENDING
        export.attempts = 0
        export.max_attempts = settings.result_send_max_attempts
        export.available_at = now
        export.error_code = None
        export.last_error = None
    await session.flush()
    await announce_job(session, settings)
    await chain.append(
        session,
        "result.exports_requeued",
        actor,
        target_type="case",
        target_id=str(case.id),
        details={"exports": [str(export.id) for export in failed[:50]], "count": len(failed)},
    )
    return failed
