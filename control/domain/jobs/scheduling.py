"""Deciding whether a case needs inference: queue it for its pipeline or mark it "no model"."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from control.config import Settings
from control.db.models import Case, CaseStatus, InferenceJob, Series, Study
from control.domain.audit.chain import Actor
from control.domain.jobs.queue import enqueue, inferred_subjects, lock_case, mark_no_model
from control.served.base import RoutingRules
from control.served.registry import route_study, served_model


async def schedule_case(
    session: AsyncSession,
    case: Case,
    study: Study,
    settings: Settings,
    actor: Actor,
    *,
    new_case: bool = False,
) -> InferenceJob | None:
    """Route ``study`` as stored so far (this transaction included) and queue ``case`` when
    some of what its pipeline reads has no finding yet; returns the job queued, if any.

    Called at ingest and when a job completes, so images that arrive after a case was
    inferred (a lateral view after the PA) get their own findings from a follow-up job. A
    study that fits no pipeline yet (say, an MR study whose FLAIR series has not arrived) is
    marked "no model" with the reason; a later upload that completes it routes it again.

    ``new_case``: the case and its study were inserted by this transaction, so no other
    transaction can see or add to them, and the case has no finding or job yet. The caller
    then passes ``study`` with every series and instance in hand (``study.series`` and each
    ``series.instances`` as created): nothing is locked, reloaded or looked up.
    """
    if case.status == CaseStatus.SIGNED_OFF:
        return None  # read-only: new images of a signed-off study change nothing on it
    if not new_case:
        await session.flush()
        await lock_case(session, case.id)
        await session.refresh(study, attribute_names=["series"])
        # Every series' instances in one query (populate_existing: this transaction's rows).
        await session.execute(
            select(Series)
            .where(Series.study_id == study.id)
            .options(selectinload(Series.instances))
            .execution_options(populate_existing=True)
        )
    route = route_study(study, RoutingRules.from_settings(settings))
    if route.pipeline is None:
        mark_no_model(case, route.reason)
        return None
    if not new_case and route.without(await inferred_subjects(session, case.id)).pipeline is None:
        return None
    settle_s = served_model(route.pipeline).settle_s(settings)
    return await enqueue(
        session, case, route.pipeline, settings, actor, settle_s=settle_s, new_case=new_case
    )
