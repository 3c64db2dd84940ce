"""Routing a case at ingest time: queue it for its pipeline or mark it "no model"."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings
from control.db.models import Case, CaseStatus, Study
from control.domain.audit.chain import Actor
from control.inference.queue import enqueue, mark_no_model
from control.inference.routing import Route, RoutingRules, route_study


async def schedule_case(
    session: AsyncSession, case: Case, study: Study, settings: Settings, actor: Actor
) -> Route:
    """Route ``study`` as stored so far (this transaction included) and queue ``case``.

    A study that fits no pipeline yet (say, an MR study whose FLAIR series has not arrived)
    is marked "no model" with the reason; a later upload that completes it routes it again.
    """
    await session.flush()
    await session.refresh(study, attribute_names=["series"])
    for series in study.series:
        await session.refresh(series, attribute_names=["instances"])
    route = route_study(study, RoutingRules.from_settings(settings))
    if case.status == CaseStatus.SIGNED_OFF:
        return route  # read-only: new images of a signed-off study change nothing on it
    if route.pipeline is None:
        mark_no_model(case, route.reason)
    else:
        await enqueue(session, case, route.pipeline, settings, actor)
    return route
