"""Worklist and case management endpoints."""

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
from control.domain.cases import service
from control.domain.cases.schemas import CaseDetail, CaseOut, CasePage, CaseUpdate
from control.domain.cases.service import SortKey, WorklistFilter
from control.domain.findings import service as findings_service
from control.domain.findings.schemas import FindingOut, HistoryEntry
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
        history = await findings_service.case_history(db_session, case)
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
