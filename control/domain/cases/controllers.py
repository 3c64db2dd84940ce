"""Worklist, case management and the case workflow (history, sign-off, retry) endpoints."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import CaseStatus, Priority, Role
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases import service, workflow
from control.domain.cases.schemas import (
    CaseDetail,
    CaseOut,
    CasePage,
    CaseUpdate,
    HistoryEntry,
    RetryIn,
    SignOffIn,
)
from control.domain.cases.service import SortKey, WorklistFilter
from control.domain.findings import service as findings_service
from control.domain.findings.schemas import FindingOut
from control.http.context import actor_from_request

#: Largest page offset: an SQL OFFSET is a signed 64-bit integer on PostgreSQL, so anything
#: beyond it failed in the driver; no worklist comes near it.
MAX_OFFSET = 2**63 - 1

AuthRequest = Request[AuthUser, object, State]


class CaseController(Controller):
    path = "/api/cases"
    tags = ["cases"]

    @get("/", operation_id="listCases", guards=[requires(Role.ADMIN, Role.RADIOLOGIST)])
    async def list_cases(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        status: list[CaseStatus] | None = None,
        assignee: Annotated[
            str | None, Parameter(description="a user id, 'me' or 'unassigned'")
        ] = None,
        modality: str | None = None,
        priority: Priority | None = None,
        received_from: date | None = None,
        received_to: date | None = None,
        sort: SortKey = "priority",
        order: Annotated[str, Parameter(pattern="^(asc|desc)$")] = "asc",
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
    ) -> CasePage:
        """The worklist, filtered, sorted and paged; radiologists see the pool and their own."""
        filters = WorklistFilter(status, assignee, modality, priority, received_from, received_to)
        cases, total = await service.list_cases(
            db_session,
            request.user,
            filters,
            sort=sort,
            descending=order == "desc",
            limit=limit,
            offset=offset,
        )
        return CasePage([CaseOut.of(case) for case in cases], total, limit, offset)

    @get("/{case_id:uuid}", operation_id="getCase", guards=[requires(Role.ADMIN, Role.RADIOLOGIST)])
    async def get_case(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID
    ) -> CaseDetail:
        """One case with its series, instances, AI findings, decisions and history; the view
        is audited."""
        case = await service.get_case(db_session, case_id, request.user)
        findings = await findings_service.case_findings(db_session, case.id)
        history = await workflow.case_history(db_session, case)
        detail = CaseDetail.of_detail(
            case, [FindingOut.of(f) for f in findings], [HistoryEntry.of(e) for e in history]
        )
        await service.record_view(db_session, case, actor_from_request(request))
        return detail

    @patch("/{case_id:uuid}", operation_id="updateCase", guards=[requires(Role.ADMIN)])
    async def update_case(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID, data: CaseUpdate
    ) -> CaseOut:
        """Assign, reassign or unassign (``assignee_id: null``) and change priority."""
        case = await service.get_case(db_session, case_id, request.user)
        change_assignee = data.assignee_id is not msgspec.UNSET
        assignee_id = data.assignee_id if isinstance(data.assignee_id, uuid.UUID) else None
        case = await service.update_case(
            db_session,
            case,
            actor_from_request(request),
            version=data.version,
            assignee_id=assignee_id,
            change_assignee=change_assignee,
            priority=data.priority,
        )
        return CaseOut.of(case)

    @post(
        "/{case_id:uuid}/claim",
        operation_id="claimCase",
        status_code=200,
        guards=[requires(Role.RADIOLOGIST)],
    )
    async def claim_case(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID
    ) -> CaseOut:
        """Take an unassigned case from the pool (radiologists); 409 if another holds it."""
        case = await service.get_case(db_session, case_id, request.user, for_claim=True)
        case = await service.claim_case(db_session, case, request.user, actor_from_request(request))
        return CaseOut.of(case)


class CaseWorkflowController(Controller):
    """A case's history, sign-off and inference retry."""

    path = "/api/cases/{case_id:uuid}"
    tags = ["cases"]

    @get("/history", operation_id="getCaseHistory", guards=[requires(Role.ADMIN, Role.RADIOLOGIST)])
    async def history(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID
    ) -> list[HistoryEntry]:
        """Every audit entry about the case and its study, oldest first."""
        case = await service.get_case(db_session, case_id, request.user, with_images=False)
        return [HistoryEntry.of(e) for e in await workflow.case_history(db_session, case)]

    @post(
        "/sign-off",
        operation_id="signOffCase",
        status_code=200,
        guards=[requires(Role.RADIOLOGIST)],
    )
    async def sign_off(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID, data: SignOffIn
    ) -> CaseOut:
        """Sign the case off (the holder only); every AI finding needs a decision first.
        A signed-off case is read-only."""
        case = await service.get_case(db_session, case_id, request.user, for_claim=True)
        case = await workflow.sign_off(
            db_session,
            case,
            request.user,
            actor_from_request(request),
            version=data.version,
            note=data.note,
        )
        return CaseOut.of(case)

    @post("/retry", operation_id="retryInference", status_code=200, guards=[requires(Role.ADMIN)])
    async def retry(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        state: State,
        case_id: uuid.UUID,
        data: RetryIn,
    ) -> CaseOut:
        """Queue a failed case for inference again (admins); 409 unless it is ``failed``."""
        case = await service.get_case(db_session, case_id, request.user)
        await workflow.retry_case(
            db_session, case, state.settings, actor_from_request(request), data.version
        )
        await db_session.commit()
        if state.worker is not None:
            state.worker.notify()
        return CaseOut.of(case)
