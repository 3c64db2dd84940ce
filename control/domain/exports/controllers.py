"""Result exports of a case: which SR/SEG objects went to which PACS destination."""

from __future__ import annotations

import uuid

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Role
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import get_case
from control.domain.exports.schemas import ExportOut
from control.http.context import actor_from_request
from control.results.jobs import case_exports, requeue_failed

AuthRequest = Request[AuthUser, object, State]


class ExportController(Controller):
    path = "/api/cases/{case_id:uuid}/exports"
    tags = ["exports"]

    @get("/", operation_id="listCaseExports", guards=[requires(Role.ADMIN, Role.RADIOLOGIST)])
    async def list_exports(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID
    ) -> list[ExportOut]:
        """What was sent where after sign-off: one entry per destination and result object,
        with its status (pending, sending, sent, failed, skipped), attempts and last error.
        Visible to whoever may see the case (404 otherwise)."""
        case = await get_case(db_session, case_id, request.user, with_images=False)
        return [ExportOut.of(export) for export in await case_exports(db_session, case.id)]

    @post("/retry", operation_id="retryCaseExports", status_code=200, guards=[requires(Role.ADMIN)])
    async def retry_exports(
        self, request: AuthRequest, db_session: AsyncSession, state: State, case_id: uuid.UUID
    ) -> list[ExportOut]:
        """Send the case's failed exports again (admins; after fixing a destination): they
        go back to ``pending`` with fresh attempts and the same SOP Instance UIDs. 409
        ``no_failed_exports`` when none failed."""
        case = await get_case(db_session, case_id, request.user, with_images=False)
        await requeue_failed(db_session, case, state.settings, actor_from_request(request))
        await db_session.commit()
        if state.worker is not None:
            state.worker.notify()
        return [ExportOut.of(export) for export in await case_exports(db_session, case.id)]
