"""Viewer endpoints: DICOM frames, headers and files, heat-map and segmentation overlays as PNG,
and the data the workstation renders itself (a grey heat map, NIfTI volume and label map).

Every route first checks that the caller may see the case; images and headers are then
served from the cache, keyed by the case's version (see :mod:`control.domain.viewer.cache`),
DICOM files and NIfTI volumes straight from the object store.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Case, Finding, FindingKind, Instance, Role
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import get_case
from control.domain.findings.service import get_finding
from control.domain.viewer import service
from control.domain.viewer.cache import Producer, cache_key, cached
from control.domain.viewer.schemas import SegmentationVolume
from control.imaging.render import require_plane

AuthRequest = Request[AuthUser, object, State]
PNG = "image/png"
DICOM_JSON = "application/dicom+json"
NIFTI_GZ = "application/gzip"
DICOM = "application/dicom"

WindowCenter = Annotated[
    float | None,
    Parameter(description="display window centre (with window_width); default: the image's"),
]
WindowWidth = Annotated[
    float | None,
    Parameter(description="display window width > 0 (with window_center)"),
]
Alpha = Annotated[float, Parameter(description="overlay opacity, 0 to 1")]
MaskChoice = Annotated[
    str, Parameter(description="'current': the edited mask in force, else the AI's; 'ai'")
]


async def _cached_response(
    request: AuthRequest,
    case: Case,
    params: dict[str, object],
    produce: Producer,
    media_type: str = PNG,
) -> Response[bytes]:
    """The response for this request and case version, from the cache or ``produce``."""
    state = request.app.state
    key = cache_key(case, request.url.path, params)
    content = await cached(state.cache, key, state.settings.cache_ttl_s, produce)
    return Response(content=content, media_type=media_type)


async def _dicom_instance(
    session: AsyncSession, request: AuthRequest, case_id: uuid.UUID, instance_id: uuid.UUID
) -> tuple[Case, Instance]:
    """The case the caller may see and its DICOM image ``instance_id``."""
    case = await get_case(session, case_id, request.user, with_images=False)
    instance = await service.get_instance(session, case, instance_id)
    service.require_dicom_image(instance)
    return case, instance


async def _finding_of_kind(
    session: AsyncSession,
    request: AuthRequest,
    case_id: uuid.UUID,
    finding_id: uuid.UUID,
    kind: FindingKind,
) -> tuple[Case, Finding]:
    """The case the caller may see and its finding ``finding_id``, which must be a ``kind``."""
    case = await get_case(session, case_id, request.user, with_images=False)
    finding = await get_finding(session, case, finding_id)
    service.require_kind(finding, kind)
    return case, finding


class ViewerController(Controller):
    path = "/api/cases"
    tags = ["viewer"]
    guards = [requires(Role.ADMIN, Role.RADIOLOGIST)]

    @get(
        "/{case_id:uuid}/instances/{instance_id:uuid}/frames/{frame:int}",
        operation_id="renderFrame",
        media_type=PNG,
    )
    async def render_frame(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        instance_id: uuid.UUID,
        frame: int,
        window_center: WindowCenter = None,
        window_width: WindowWidth = None,
    ) -> Response[bytes]:
        """Frame ``frame`` (0-based) of a DICOM image as PNG, grey images windowed.

        Without a window the image's own Window Center/Width is used, else one spanning its
        values. NIfTI volumes answer 400 ``not_a_dicom_image``: use the slice endpoint.
        """
        case, instance = await _dicom_instance(db_session, request, case_id, instance_id)
        window = service.requested_window(window_center, window_width)
        store = request.app.state.store
        return await _cached_response(
            request,
            case,
            {"window_center": window_center, "window_width": window_width},
            lambda: service.frame_png(store, instance, frame, window),
        )

    @get(
        "/{case_id:uuid}/instances/{instance_id:uuid}/metadata",
        operation_id="getInstanceMetadata",
        media_type=DICOM_JSON,
    )
    async def get_instance_metadata(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        instance_id: uuid.UUID,
    ) -> Response[bytes]:
        """The instance's de-identified DICOM header as DICOM JSON (PS3.18 F.2).

        Pixel data and other binary elements over 1 KiB are left out.
        """
        case, instance = await _dicom_instance(db_session, request, case_id, instance_id)
        store = request.app.state.store
        return await _cached_response(
            request, case, {}, lambda: service.header_json(store, instance), DICOM_JSON
        )

    @get(
        "/{case_id:uuid}/instances/{instance_id:uuid}/file",
        operation_id="getInstanceFile",
        media_type=DICOM,
    )
    async def get_instance_file(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        instance_id: uuid.UUID,
    ) -> Response[bytes]:
        """The stored DICOM Part-10 file of the instance, as de-identified at ingest, for
        viewers that decode DICOM themselves. Checked against its recorded SHA-256; not
        cached (the store already holds exactly these bytes). NIfTI volumes answer 400
        ``not_a_dicom_image``.
        """
        _, instance = await _dicom_instance(db_session, request, case_id, instance_id)
        store = request.app.state.store
        payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
        return Response(content=payload, media_type=DICOM)

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/cam/{label:str}",
        operation_id="renderCamOverlay",
        media_type=PNG,
    )
    async def render_cam_overlay(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        label: str,
        alpha: Alpha = 0.4,
        window_center: WindowCenter = None,
        window_width: WindowWidth = None,
    ) -> Response[bytes]:
        """A classification finding's heat map for ``label`` over its image, as RGB PNG.

        400 ``not_a_classification`` for other findings; 404 ``cam_not_found`` when the
        model gave no heat map for ``label``.
        """
        case, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.CLASSIFICATION
        )
        cam = service.cam_ref(finding, label)
        window = service.requested_window(window_center, window_width)
        instance = await service.finding_instance(db_session, case, finding)
        store = request.app.state.store
        return await _cached_response(
            request,
            case,
            {"alpha": alpha, "window_center": window_center, "window_width": window_width},
            lambda: service.cam_overlay_png(store, instance, cam, alpha, window),
        )

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/slices/{plane:str}/{index:int}",
        operation_id="renderSegmentationSlice",
        media_type=PNG,
    )
    async def render_segmentation_slice(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        plane: Annotated[str, Parameter(description="axial, coronal or sagittal")],
        index: int,
        channel: Annotated[str, Parameter(description="T1, T1ce, T2 or FLAIR")] = "FLAIR",
        overlay: Annotated[bool, Parameter(description="tint the labelled voxels")] = True,
        alpha: Alpha = 0.4,
        mask: Annotated[
            str,
            Parameter(description="'current': the edited mask in force, else the AI's; 'ai'"),
        ] = "current",
        window_center: WindowCenter = None,
        window_width: WindowWidth = None,
    ) -> Response[bytes]:
        """Slice ``index`` of a segmentation finding's MRI volume in ``plane``, as PNG.

        Shown in radiological orientation; with ``overlay`` the labels are tinted (necrotic
        core red, edema green, enhancing tumour yellow). Without a window the channel's
        default window is used. 400 ``not_a_segmentation``, ``invalid_channel``,
        ``invalid_mask_choice``, ``invalid_plane``, ``slice_out_of_range``.
        """
        case, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.SEGMENTATION
        )
        view = (require_plane(plane), index, service.require_channel(channel))
        labels = service.label_map_source(finding, mask)
        window = service.requested_window(window_center, window_width)
        params: dict[str, object] = {
            "channel": channel,
            "overlay": overlay,
            "alpha": alpha if overlay else None,
            "mask": mask if overlay else None,
            "window_center": window_center,
            "window_width": window_width,
        }
        store = request.app.state.store
        return await _cached_response(
            request,
            case,
            params,
            lambda: service.segmentation_slice_png(
                store, finding, view, window, labels if overlay else None, alpha
            ),
        )

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/volume",
        operation_id="getSegmentationVolume",
    )
    async def get_segmentation_volume(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
    ) -> SegmentationVolume:
        """The grid of a segmentation finding's volume: shape, spacing, slices per plane,
        channels and the AI's region volumes in millilitres (400 ``not_a_segmentation``)."""
        _, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.SEGMENTATION
        )
        return await service.segmentation_volume(request.app.state.store, finding)

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/cam/{label:str}/map",
        operation_id="getCamMap",
        media_type=PNG,
    )
    async def get_cam_map(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        label: str,
    ) -> Response[bytes]:
        """A classification finding's heat map for ``label`` as an 8-bit grey PNG (0 = no
        activation, 255 = the strongest), covering the whole image at reduced size with the
        image's aspect ratio; the viewer scales and colours it. 404 ``cam_not_found``."""
        case, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.CLASSIFICATION
        )
        cam = service.cam_ref(finding, label)
        store = request.app.state.store
        return await _cached_response(request, case, {}, lambda: service.cam_map_png(store, cam))

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/nifti/volume",
        operation_id="getSegmentationVolumeNifti",
        media_type=NIFTI_GZ,
    )
    async def get_volume_nifti(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
    ) -> Response[bytes]:
        """The segmentation finding's MRI volume: gzip NIfTI-1, shape ``(X, Y, Z, 4)``,
        channels T1, T1ce, T2, FLAIR (400 ``not_a_segmentation``)."""
        _, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.SEGMENTATION
        )
        payload = await request.app.state.store.get(service.volume_key(finding))
        return Response(payload, media_type=NIFTI_GZ)

    @get(
        "/{case_id:uuid}/findings/{finding_id:uuid}/nifti/labels",
        operation_id="getSegmentationLabelsNifti",
        media_type=NIFTI_GZ,
    )
    async def get_labels_nifti(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        mask: MaskChoice = "current",
    ) -> Response[bytes]:
        """The label map (0 background, 1 necrotic core, 2 edema, 3 enhancing tumour) on the
        volume's grid as gzip NIfTI-1: the radiologist's edit in force or, with ``mask=ai``
        or without an edit, the model's. 400 ``not_a_segmentation``, ``invalid_mask_choice``."""
        _, finding = await _finding_of_kind(
            db_session, request, case_id, finding_id, FindingKind.SEGMENTATION
        )
        key, sha256 = service.label_map_source(finding, mask)
        payload = await request.app.state.store.get(key, expected_sha256=sha256)
        return Response(payload, media_type=NIFTI_GZ)
