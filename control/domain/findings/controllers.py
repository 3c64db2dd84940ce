"""Findings and decisions: the radiologist's side of every AI suggestion."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import DecisionAction, Role
from control.dicom.reader import UploadLimits
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import get_case
from control.domain.findings import service
from control.domain.findings.schemas import (
    DecisionIn,
    DecisionOut,
    FindingOut,
)
from control.domain.findings.service import DecisionRequest
from control.errors import InvalidInputError, PayloadTooLargeError
from control.http.context import actor_from_request

AuthRequest = Request[AuthUser, object, State]
READERS = (Role.ADMIN, Role.RADIOLOGIST)


class MaskForm(msgspec.Struct):
    """A replacement segmentation (NIfTI label map on the AI segmentation's grid) and why."""

    file: UploadFile
    reason: str
    note: str | None = None
    supersedes: uuid.UUID | None = None


class FindingController(Controller):
    path = "/api/cases/{case_id:uuid}"
    tags = ["findings"]

    @get("/findings", operation_id="listFindings", guards=[requires(*READERS)])
    async def list_findings(
        self, request: AuthRequest, db_session: AsyncSession, case_id: uuid.UUID
    ) -> list[FindingOut]:
        """The case's AI findings with provenance, decisions and the decision in force."""
        case = await get_case(db_session, case_id, request.user, with_images=False)
        return [FindingOut.of(f) for f in await service.case_findings(db_session, case.id)]

    @post(
        "/findings/{finding_id:uuid}/decisions",
        operation_id="decideFinding",
        guards=[requires(Role.RADIOLOGIST)],
    )
    async def decide(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        data: DecisionIn,
    ) -> DecisionOut:
        """Accept, reject or edit (labels) a finding; 403 unless you hold the case, 409 when
        the case is signed off or another decision was recorded first."""
        case = await get_case(db_session, case_id, request.user, for_claim=True, with_images=False)
        finding = await service.get_finding(db_session, case, finding_id)
        decision = await service.decide(
            db_session,
            case,
            finding,
            request.user,
            actor_from_request(request),
            DecisionRequest(data.action, data.reason, data.note, data.labels, data.supersedes),
        )
        return DecisionOut.of(decision)

    @post(
        "/findings/{finding_id:uuid}/mask",
        operation_id="replaceSegmentation",
        guards=[requires(Role.RADIOLOGIST)],
    )
    async def replace_mask(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        state: State,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        data: Annotated[MaskForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> DecisionOut:
        """Edit a segmentation by uploading a corrected label map (0 background, 1 necrotic
        core, 2 edema, 3 enhancing tumour) on the AI segmentation's grid, with a reason."""
        case = await get_case(db_session, case_id, request.user, for_claim=True, with_images=False)
        finding = await service.get_finding(db_session, case, finding_id)
        payload = await data.file.read()
        if len(payload) > state.settings.max_file_bytes:
            raise PayloadTooLargeError("the mask file is too large", code="file_too_large")
        if not payload:
            raise InvalidInputError("the mask file is empty", code="invalid_mask")
        mask = await service.store_mask(
            state.store,
            case,
            finding,
            request.user,
            (payload, data.file.filename or "mask"),
            UploadLimits.from_settings(state.settings),
        )
        try:
            decision = await service.decide(
                db_session,
                case,
                finding,
                request.user,
                actor_from_request(request),
                DecisionRequest(DecisionAction.EDIT, data.reason, data.note, None, data.supersedes),
                mask,
            )
        except BaseException:
            await state.store.delete(mask.key)  # the refused decision leaves nothing behind
            raise
        return DecisionOut.of(decision)
