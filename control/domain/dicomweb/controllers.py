"""The DICOMweb routes under ``/dicomweb`` (PS3.18): STOW-RS, QIDO-RS, WADO-RS.

Roles follow the REST API: integration accounts and admins store (as they upload);
admins, integration accounts (the PACS) and radiologists search and retrieve, radiologists
only studies whose case they may see. Errors are the API's JSON bodies with a ``code``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Instance, Role, Study
from control.domain.audit import chain
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.dicomweb import media, qido, wado
from control.domain.dicomweb.headers import instance_header
from control.domain.dicomweb.multipart import (
    PART_END,
    PartLimits,
    closing_delimiter,
    new_boundary,
    part_head,
    read_parts,
)
from control.domain.dicomweb.query import QidoQuery, parse_query
from control.domain.dicomweb.stow import part_examiner, store_parts
from control.errors import InvalidInputError
from control.http.context import actor_from_request
from control.storage import ObjectStore

AuthRequest = Request[AuthUser, object, State]
PREFIX = "/dicomweb"
READ_ROLES = (Role.ADMIN, Role.RADIOLOGIST, Role.INTEGRATION)
#: The roles that may upload DICOM through the REST API, less radiologists: STOW-RS is how
#: a PACS pushes studies, not a reading tool (the issue's "integration and admin store").
STORE_ROLES = (Role.ADMIN, Role.INTEGRATION)

Window = Annotated[
    str | None, Parameter(description="center,width[,linear]: the VOI window (PS3.18 8.3.5.1.3)")
]
Viewport = Annotated[str | None, Parameter(description="vw,vh: fit the image into this size")]
Quality = Annotated[str | None, Parameter(description="JPEG quality, 1 to 100 (default 90)")]
_SUPPORTED_WARNING = '299 medvision "The following attributes were not supported for matching: {}"'
_MORE_WARNING = '299 medvision "There are additional results that can be requested"'


def _base_url(request: AuthRequest) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _dicom_json(value: Any, status_code: int = 200) -> Response[bytes]:
    return Response(
        json.dumps(value, separators=(",", ":")).encode(),
        media_type=media.DICOM_JSON,
        status_code=status_code,
    )


def _search_response(result: qido.SearchResult, query: QidoQuery) -> Response[bytes]:
    """200 with the datasets, or 204 when none matched; warnings per PS3.18 8.3.4."""
    warnings = []
    if query.ignored:
        warnings.append(_SUPPORTED_WARNING.format(", ".join(query.ignored)[:200]))
    if result.truncated:
        warnings.append(_MORE_WARNING)
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    if not result.datasets:
        return Response(b"", status_code=204, headers=headers, media_type=media.DICOM_JSON)
    response = _dicom_json(result.datasets)
    if headers:
        response.headers.update(headers)
    return response


async def _instance_stream(
    state: State, instances: list[Instance], syntax: str | None, boundary: str, first: bytes | None
) -> AsyncIterator[bytes]:
    """The multipart body: each instance as stored (or re-encoded), one at a time."""
    for index, instance in enumerate(instances):
        if index == 0 and first is not None:
            payload = first
        else:
            payload = await state.store.get(instance.object_key, expected_sha256=instance.sha256)
            if syntax is not None:
                payload = await anyio.to_thread.run_sync(wado.to_explicit_little_endian, payload)
        yield part_head(boundary, media.DICOM)
        yield payload
        yield PART_END
    yield closing_delimiter(boundary)


class DicomwebController(Controller):
    path = PREFIX
    tags = ["dicomweb"]

    # ------------------------------------------------------------------ STOW-RS

    async def _store(
        self, request: AuthRequest, db_session: AsyncSession, study: str | None
    ) -> Response[bytes]:
        boundary = media.stow_boundary(request.headers.get("content-type"))
        state = request.app.state
        settings = state.settings
        limits = PartLimits(settings.max_files_per_request, settings.max_file_bytes)
        examine = part_examiner(settings, study)
        parts = await read_parts(request.stream(), boundary, limits, examine)
        actor = actor_from_request(request)
        outcome = await store_parts(
            db_session, state.store, settings, parts, actor, _base_url(request), study
        )
        await chain.append(
            db_session,
            "dicomweb.stored",
            actor,
            target_type="dicomweb",
            target_id=None,
            outcome="success" if outcome.stored else "failure",
            details={"parts": len(parts), "stored": outcome.stored, "failed": outcome.failed},
        )
        await db_session.commit()
        worker = getattr(state, "worker", None)
        if worker is not None and outcome.ingest.queued_anything:
            worker.notify()
        return _dicom_json(outcome.response, outcome.status_code)

    @post(
        "/studies",
        operation_id="dicomwebStoreInstances",
        guards=[requires(*STORE_ROLES)],
        media_type=media.DICOM_JSON,
        status_code=200,
    )
    async def store_instances(
        self, request: AuthRequest, db_session: AsyncSession
    ) -> Response[bytes]:
        """STOW-RS: store the ``application/dicom`` parts of a ``multipart/related`` body.

        200 when all were stored, 202 when some failed, 409 when all failed; the body lists
        the stored instances by their pseudonymous UIDs and the failed ones with a
        FailureReason. 415 ``unsupported_media_type`` for other bodies.
        """
        return await self._store(request, db_session, None)

    @post(
        "/studies/{study:str}",
        operation_id="dicomwebStoreStudyInstances",
        guards=[requires(*STORE_ROLES)],
        media_type=media.DICOM_JSON,
        status_code=200,
    )
    async def store_study_instances(
        self, request: AuthRequest, db_session: AsyncSession, study: str
    ) -> Response[bytes]:
        """STOW-RS into one study: instances of another study fail with 0xA900. ``study`` is
        the study's UID as sent by the PACS or as stored (its pseudonym)."""
        return await self._store(request, db_session, study)

    # ------------------------------------------------------------------ QIDO-RS

    @get("/studies", operation_id="dicomwebSearchStudies", guards=[requires(*READ_ROLES)])
    async def search_studies(
        self, request: AuthRequest, db_session: AsyncSession
    ) -> Response[bytes]:
        """QIDO-RS: studies matching the query (StudyInstanceUID, StudyDate, ModalitiesInStudy,
        PatientID, ...; ``limit``, ``offset``, ``includefield``)."""
        media.negotiate_metadata(request.headers.get("accept"))
        query = parse_query(request.query_params.multi_items(), "study")
        result = await qido.search_studies(
            db_session, request.app.state, request.user, query, _base_url(request)
        )
        return _search_response(result, query)

    @get(
        "/studies/{study:str}/series",
        operation_id="dicomwebSearchSeries",
        guards=[requires(*READ_ROLES)],
    )
    async def search_series(
        self, request: AuthRequest, db_session: AsyncSession, study: str
    ) -> Response[bytes]:
        """QIDO-RS: series of a study (SeriesInstanceUID, Modality)."""
        media.negotiate_metadata(request.headers.get("accept"))
        query = parse_query(request.query_params.multi_items(), "series")
        found = await qido.require_study(db_session, request.user, study)
        result = await qido.search_series(
            db_session, request.app.state, found, query, _base_url(request)
        )
        return _search_response(result, query)

    async def _search_instances(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str | None
    ) -> Response[bytes]:
        media.negotiate_metadata(request.headers.get("accept"))
        query = parse_query(request.query_params.multi_items(), "instance")
        found = await qido.require_study(db_session, request.user, study)
        result = await qido.search_instances(
            db_session, request.app.state, found, series, query, _base_url(request)
        )
        return _search_response(result, query)

    @get(
        "/studies/{study:str}/instances",
        operation_id="dicomwebSearchStudyInstances",
        guards=[requires(*READ_ROLES)],
    )
    async def search_study_instances(
        self, request: AuthRequest, db_session: AsyncSession, study: str
    ) -> Response[bytes]:
        """QIDO-RS: instances of a study (SOPInstanceUID, SOPClassUID, SeriesInstanceUID)."""
        return await self._search_instances(request, db_session, study, None)

    @get(
        "/studies/{study:str}/series/{series:str}/instances",
        operation_id="dicomwebSearchSeriesInstances",
        guards=[requires(*READ_ROLES)],
    )
    async def search_series_instances(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str
    ) -> Response[bytes]:
        """QIDO-RS: instances of a series (SOPInstanceUID, SOPClassUID)."""
        return await self._search_instances(request, db_session, study, series)

    # ------------------------------------------------------------------ WADO-RS

    async def _retrieve(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study: str,
        series: str | None = None,
        instance: str | None = None,
    ) -> Stream:
        syntax = media.negotiate_instances(request.headers.get("accept"))
        found = await qido.require_study(db_session, request.user, study)
        instances = await wado.select_instances(db_session, found, series, instance)
        state = request.app.state
        first = None
        if syntax is not None:
            # Re-encode the first instance before answering, so a failure is still a 406.
            payload = await state.store.get(
                instances[0].object_key, expected_sha256=instances[0].sha256
            )
            first = await anyio.to_thread.run_sync(wado.to_explicit_little_endian, payload)
        await _audit_retrieve(request, db_session, found, len(instances))
        boundary = new_boundary()
        return Stream(
            _instance_stream(state, instances, syntax, boundary, first),
            media_type=media.multipart_type(boundary, media.DICOM, syntax),
        )

    @get(
        "/studies/{study:str}",
        operation_id="dicomwebRetrieveStudy",
        guards=[requires(*READ_ROLES)],
    )
    async def retrieve_study(
        self, request: AuthRequest, db_session: AsyncSession, study: str
    ) -> Stream:
        """WADO-RS: every instance of a study, ``multipart/related; type="application/dicom"``."""
        return await self._retrieve(request, db_session, study)

    @get(
        "/studies/{study:str}/series/{series:str}",
        operation_id="dicomwebRetrieveSeries",
        guards=[requires(*READ_ROLES)],
    )
    async def retrieve_series(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str
    ) -> Stream:
        """WADO-RS: every instance of a series."""
        return await self._retrieve(request, db_session, study, series)

    @get(
        "/studies/{study:str}/series/{series:str}/instances/{instance:str}",
        operation_id="dicomwebRetrieveInstance",
        guards=[requires(*READ_ROLES)],
    )
    async def retrieve_instance(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str, instance: str
    ) -> Stream:
        """WADO-RS: one instance."""
        return await self._retrieve(request, db_session, study, series, instance)

    async def _metadata(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study: str,
        series: str | None = None,
        instance: str | None = None,
    ) -> Response[bytes]:
        media.negotiate_metadata(request.headers.get("accept"))
        found = await qido.require_study(db_session, request.user, study)
        instances = await wado.select_instances(db_session, found, series, instance)
        state = request.app.state
        return _dicom_json([await instance_header(state, item) for item in instances])

    @get(
        "/studies/{study:str}/metadata",
        operation_id="dicomwebRetrieveStudyMetadata",
        guards=[requires(*READ_ROLES)],
    )
    async def study_metadata(
        self, request: AuthRequest, db_session: AsyncSession, study: str
    ) -> Response[bytes]:
        """WADO-RS: the headers of a study's instances as DICOM JSON (no bulk data)."""
        return await self._metadata(request, db_session, study)

    @get(
        "/studies/{study:str}/series/{series:str}/metadata",
        operation_id="dicomwebRetrieveSeriesMetadata",
        guards=[requires(*READ_ROLES)],
    )
    async def series_metadata(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str
    ) -> Response[bytes]:
        """WADO-RS: the headers of a series' instances as DICOM JSON (no bulk data)."""
        return await self._metadata(request, db_session, study, series)

    @get(
        "/studies/{study:str}/series/{series:str}/instances/{instance:str}/metadata",
        operation_id="dicomwebRetrieveInstanceMetadata",
        guards=[requires(*READ_ROLES)],
    )
    async def instance_metadata(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str, instance: str
    ) -> Response[bytes]:
        """WADO-RS: one instance's header as DICOM JSON (an array of one; no bulk data)."""
        return await self._metadata(request, db_session, study, series, instance)

    async def _one_instance(
        self, request: AuthRequest, db_session: AsyncSession, study: str, series: str, instance: str
    ) -> bytes:
        found = await qido.require_study(db_session, request.user, study)
        (item,) = await wado.select_instances(db_session, found, series, instance)
        store: ObjectStore = request.app.state.store
        return await store.get(item.object_key, expected_sha256=item.sha256)

    @get(
        "/studies/{study:str}/series/{series:str}/instances/{instance:str}/frames/{frames:str}",
        operation_id="dicomwebRetrieveFrames",
        guards=[requires(*READ_ROLES)],
    )
    async def retrieve_frames(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study: str,
        series: str,
        instance: str,
        frames: str,
    ) -> Response[bytes]:
        """WADO-RS: the listed frames (1-based, ``1,2,3``) uncompressed, each an
        ``application/octet-stream`` part of ``multipart/related``."""
        media.negotiate_frames(request.headers.get("accept"))
        numbers = wado.parse_frame_list(frames)
        payload = await self._one_instance(request, db_session, study, series, instance)
        pieces = await anyio.to_thread.run_sync(wado.frame_bytes, payload, numbers)
        boundary = new_boundary()
        body = b"".join(
            [
                *(
                    part
                    for piece in pieces
                    for part in (part_head(boundary, media.OCTET_STREAM), piece, PART_END)
                ),
                closing_delimiter(boundary),
            ]
        )
        return Response(body, media_type=media.multipart_type(boundary, media.OCTET_STREAM))

    async def _rendered(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        path: tuple[str, str, str],
        frame: int,
        options: tuple[str | None, str | None, str | None],
    ) -> Response[bytes]:
        media_type = media.negotiate_rendered(request.headers.get("accept"))
        render_options = wado.parse_render_options(*options)
        payload = await self._one_instance(request, db_session, *path)
        image = await anyio.to_thread.run_sync(
            wado.render, payload, frame, render_options, media_type
        )
        return Response(image, media_type=media_type)

    @get(
        "/studies/{study:str}/series/{series:str}/instances/{instance:str}/rendered",
        operation_id="dicomwebRetrieveInstanceRendered",
        guards=[requires(*READ_ROLES)],
    )
    async def instance_rendered(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study: str,
        series: str,
        instance: str,
        window: Window = None,
        viewport: Viewport = None,
        quality: Quality = None,
    ) -> Response[bytes]:
        """WADO-RS: the instance (its first frame) as ``image/jpeg`` or ``image/png``."""
        return await self._rendered(
            request, db_session, (study, series, instance), 1, (window, viewport, quality)
        )

    @get(
        "/studies/{study:str}/series/{series:str}/instances/{instance:str}/frames/{frames:str}/rendered",
        operation_id="dicomwebRetrieveFrameRendered",
        guards=[requires(*READ_ROLES)],
    )
    async def frame_rendered(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        study: str,
        series: str,
        instance: str,
        frames: str,
        window: Window = None,
        viewport: Viewport = None,
        quality: Quality = None,
    ) -> Response[bytes]:
        """WADO-RS: one frame (1-based) as ``image/jpeg`` or ``image/png``."""
        numbers = wado.parse_frame_list(frames)
        if len(numbers) != 1:
            raise InvalidInputError(
                "a rendered frame request names exactly one frame", code="invalid_frame_list"
            )
        return await self._rendered(
            request, db_session, (study, series, instance), numbers[0], (window, viewport, quality)
        )


async def _audit_retrieve(
    request: AuthRequest, session: AsyncSession, study: Study, count: int
) -> None:
    """One audit entry per WADO-RS retrieve of DICOM objects (they leave MedVision)."""
    await chain.append(
        session,
        "dicomweb.retrieved",
        actor_from_request(request),
        target_type="study",
        target_id=str(study.id),
        details={"instances": count},
    )
    await session.commit()
