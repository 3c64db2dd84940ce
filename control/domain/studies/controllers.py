"""Study upload and study-level endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Case, Role
from control.domain.audit import chain
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases.schemas import SeriesOut, StudySummary
from control.domain.cases.service import visible_to
from control.domain.studies.links import LinkCipher
from control.domain.studies.service import (
    IngestedStudy,
    IngestService,
    get_study,
    original_study_uid,
)
from control.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from control.http.context import actor_from_request
from control.http.input_guard import reject_nul

AuthRequest = Request[AuthUser, object, State]
UPLOAD_FIELDS = {"files", "race_ethnicity"}
#: Who may set a study's self-reported demographics: the PATCH route, and an upload that
#: creates the study (the one place an upload records them).
DEMOGRAPHICS_ROLES = (Role.ADMIN, Role.INTEGRATION)


class UploadForm(msgspec.Struct):
    """Multipart upload: ``files`` (one or many DICOM or NIfTI files) and optional demographics."""

    files: list[UploadFile]
    race_ethnicity: str | None = None


class UploadResult(msgspec.Struct):
    studies: list[IngestedStudy]
    study_ids: list[uuid.UUID]
    case_ids: list[uuid.UUID]


class StudyDetail(StudySummary):
    series: list[SeriesOut] = msgspec.field(default_factory=list)


class DemographicsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Self-reported race/ethnicity supplied by the integration (never read from DICOM)."""

    race_ethnicity: Annotated[str, msgspec.Meta(max_length=64)] | None


class StudyLinkOut(msgspec.Struct):
    study_id: uuid.UUID
    study_uid: str
    original_study_uid: str


async def _read_uploads(
    request: AuthRequest, state: State
) -> tuple[list[tuple[str, bytes]], str | None]:
    form = await request.form()
    unknown = sorted(set(form.keys()) - UPLOAD_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown form fields: {', '.join(unknown)}",
            code="unknown_field",
            detail={"fields": unknown},
        )
    uploads = form.getall("files") if "files" in form else []
    if not uploads or not all(isinstance(item, UploadFile) for item in uploads):
        raise InvalidInputError("form field 'files' must carry one or more files", code="no_files")
    settings = state.settings
    if len(uploads) > settings.max_files_per_request:
        raise PayloadTooLargeError(
            f"at most {settings.max_files_per_request} files per request", code="too_many_files"
        )
    files: list[tuple[str, bytes]] = []
    for upload in uploads:
        data = await upload.read()
        name = upload.filename or f"file-{len(files) + 1}"
        if len(data) > settings.max_file_bytes:
            raise PayloadTooLargeError(
                f"{name}: file exceeds {settings.max_file_bytes} bytes",
                code="file_too_large",
                detail={"filename": name},
            )
        files.append((name, data))
    race = form.get("race_ethnicity")
    if race is not None and (not isinstance(race, str) or len(race) > 64):
        raise InvalidInputError(
            "race_ethnicity must be text of at most 64 characters", code="invalid_field"
        )
    if race:
        reject_nul(race, "race_ethnicity")
        if request.user.role not in DEMOGRAPHICS_ROLES:
            raise PermissionDeniedError(
                "race_ethnicity may be sent only by roles that may set demographics",
                code="permission_denied",
                detail={"field": "race_ethnicity"},
            )
    return files, (race or None)


class StudyController(Controller):
    path = "/api/studies"
    tags = ["studies"]

    @post(
        "/",
        operation_id="uploadStudies",
        guards=[requires(Role.ADMIN, Role.INTEGRATION, Role.RADIOLOGIST)],
    )
    async def upload(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        state: State,
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[UploadResult]:
        """Upload DICOM or NIfTI files; they are validated and de-identified before storage.

        Answers 201 when anything new was stored, 200 when every instance was already stored.
        A bad file rejects the whole request and nothing is stored.
        """
        files, race = await _read_uploads(request, state)
        service = IngestService(db_session, state.store, state.settings)
        result = await service.ingest(files, actor_from_request(request), race, request.user)
        worker = getattr(state, "worker", None)
        if worker is not None and result.queued_anything:
            worker.notify()
        body = UploadResult(
            studies=result.studies,
            study_ids=[study.study_id for study in result.studies],
            case_ids=[study.case_id for study in result.studies],
        )
        return Response(body, status_code=201 if result.created_anything else 200)

    @get(
        "/{study_id:uuid}",
        operation_id="getStudy",
        guards=[requires(Role.ADMIN, Role.RADIOLOGIST, Role.INTEGRATION)],
    )
    async def get_study(
        self, request: AuthRequest, db_session: AsyncSession, study_id: uuid.UUID
    ) -> StudyDetail:
        """A study with its series and instances; radiologists only for cases they may see."""
        study = await get_study(db_session, study_id)
        visible_case = visible_to(select(Case.id).where(Case.study_id == study.id), request.user)
        if await db_session.scalar(visible_case) is None:
            raise NotFoundError(f"study {study_id} not found", code="study_not_found")
        summary = StudySummary.of(study)
        detail = StudyDetail(
            **{name: getattr(summary, name) for name in StudySummary.__struct_fields__},
            series=[SeriesOut.of(series) for series in study.series],
        )
        await chain.append(
            db_session,
            "study.viewed",
            actor_from_request(request),
            target_type="study",
            target_id=str(study.id),
        )
        await db_session.commit()
        return detail

    @patch(
        "/{study_id:uuid}/demographics",
        operation_id="updateStudyDemographics",
        guards=[requires(*DEMOGRAPHICS_ROLES)],
    )
    async def update_demographics(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study_id: uuid.UUID,
        data: DemographicsUpdate,
    ) -> StudySummary:
        """Set self-reported race/ethnicity, used only for fairness evaluation."""
        study = await get_study(db_session, study_id)
        study.race_ethnicity = data.race_ethnicity
        await chain.append(
            db_session,
            "study.demographics_updated",
            actor_from_request(request),
            target_type="study",
            target_id=str(study.id),
            details={"race_ethnicity": "set" if data.race_ethnicity else "cleared"},
        )
        await db_session.commit()
        return StudySummary.of(study)

    @get(
        "/{study_id:uuid}/link",
        operation_id="getStudyLink",
        guards=[requires(Role.ADMIN, Role.INTEGRATION)],
    )
    async def get_link(
        self, request: AuthRequest, db_session: AsyncSession, state: State, study_id: uuid.UUID
    ) -> StudyLinkOut:
        """The original Study Instance UID behind the pseudonym, for results sent to the PACS."""
        study = await get_study(db_session, study_id)
        cipher = LinkCipher(state.settings.key("link"))
        original = await original_study_uid(db_session, study, cipher, actor_from_request(request))
        return StudyLinkOut(study.id, study.study_uid, original)
