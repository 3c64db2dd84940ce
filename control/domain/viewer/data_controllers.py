"""Viewer data for client-side rendering: a heat map as a grey image, and a segmentation
finding's MRI volume and label map as NIfTI files.

The workstation draws these itself (the CAM in colour over Cornerstone's image, the volume
and labels in NiiVue) so that window/level, zoom and mask editing need no round trip. The
same guards as the rendered views apply; responses are private to the caller.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import FindingKind, Role
from control.domain.auth.guards import requires
from control.domain.viewer import service
from control.domain.viewer.controllers import AuthRequest, _cached_response, _finding_of_kind

NIFTI_GZ = "application/gzip"
PNG = "image/png"
PRIVATE = {"Cache-Control": "private, max-age=0, must-revalidate"}

MaskChoice = Annotated[
    str, Parameter(description="'current': the edited mask in force, else the AI's; 'ai'")
]


class ViewerDataController(Controller):
    path = "/api/cases"
    tags = ["viewer"]
    guards = [requires(Role.ADMIN, Role.RADIOLOGIST)]

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
        payload = await request.app.state.store.get(service.artifact(finding, "volume"))
        return Response(payload, media_type=NIFTI_GZ, headers=PRIVATE)

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
        return Response(payload, media_type=NIFTI_GZ, headers=PRIVATE)
