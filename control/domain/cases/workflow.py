"""The case workflow around its findings: history, sign-off and retrying inference.

Sign-off, retry and history are about the case as a whole; decisions on single findings
are :mod:`control.domain.findings.service`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings
from control.db.engine import settings_of
from control.db.models import AuditEntry, Case, CaseStatus, InferenceJob
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import (
    check_version,
    clean_text,
    concurrent_change_conflicts,
    require_holder,
)
from control.domain.findings.service import case_findings, current_decision
from control.domain.jobs.queue import (
    FOLLOW_UP_FAILED_FLAG,
    NO_MODEL_FLAG,
    enqueue,
    unfinished_job,
)
from control.errors import ConflictError
from control.results.jobs import enqueue_case_exports


async def case_history(session: AsyncSession, case: Case) -> list[AuditEntry]:
    """Audit entries about the case or its study, in chain order."""
    targets = [str(case.id), str(case.study_id)]
    result = await session.scalars(
        select(AuditEntry).where(AuditEntry.target_id.in_(targets)).order_by(AuditEntry.id)
    )
    return list(result.all())


async def sign_off(
    session: AsyncSession,
    case: Case,
    user: AuthUser,
    actor: Actor,
    *,
    version: int,
    note: str | None,
) -> Case:
    """Sign the case off: no inference may be pending and every AI finding must carry a
    decision; the case becomes read-only."""
    require_holder(case, user)
    check_version(case, version)
    readable = case.status in (CaseStatus.INFERRED, CaseStatus.IN_REVIEW, CaseStatus.FAILED) or (
        case.status == CaseStatus.RECEIVED and NO_MODEL_FLAG in case.flags
    )
    if not readable:
        raise ConflictError(
            f"a {case.status.value} case cannot be signed off yet: its inference is pending",
            code="inference_pending",
        )
    if await unfinished_job(session, case.id) is not None:
        raise ConflictError(
            "images that arrived after the case was inferred are still being inferred",
            code="inference_pending",
        )
    findings = await case_findings(session, case.id)
    undecided = [str(f.id) for f in findings if current_decision(f) is None]
    if undecided:
        raise ConflictError(
            f"{len(undecided)} AI finding(s) have no decision yet",
            code="decisions_missing",
            detail={"finding_ids": undecided},
        )
    now = datetime.now(UTC)
    case.status = CaseStatus.SIGNED_OFF
    case.signed_off_by_id = user.id
    case.signed_off_at = now
    case.sign_off_note = clean_text(note, "note")
    async with concurrent_change_conflicts(session):
        await chain.append(
            session,
            "case.signed_off",
            actor,
            target_type="case",
            target_id=str(case.id),
            details={
                "decisions": {
                    str(f.id): str(decision.id)
                    for f in findings
                    if (decision := current_decision(f)) is not None
                },
                "note": case.sign_off_note,
            },
        )
        # The results go to the configured PACS destinations: queued with the sign-off, so
        # a signed-off case always has its exports (control.results.jobs).
        settings = settings_of(session.get_bind())
        if settings is not None:
            await enqueue_case_exports(session, case, findings, settings, actor)
        await session.commit()
    return case


async def retry_case(
    session: AsyncSession, case: Case, settings: Settings, actor: Actor, version: int
) -> InferenceJob:
    """Queue a failed case (or a case in review whose follow-up job failed) again (admin);
    409 ``case_not_failed`` otherwise."""
    check_version(case, version)
    failed = case.status == CaseStatus.FAILED or FOLLOW_UP_FAILED_FLAG in case.flags
    if not failed or not case.pipeline:
        raise ConflictError(
            "only a failed case with a pipeline can be retried",
            code="case_not_failed",
            detail={"status": case.status.value},
        )
    job = await enqueue(session, case, case.pipeline, settings, actor)
    if job is None:
        raise ConflictError("the case already has a pending or running job", code="job_active")
    return job
