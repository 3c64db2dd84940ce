"""Viewer endpoints of a finding read slice by slice (``ct_head``): its per-slice results,
each slice as an image under a chosen window, and each slice's heat map.

Slices are numbered as the model read them: 0 is the first in position order (inferior for
an axial head CT). Images and maps come from the cache like the other viewer images.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Case, Finding, Instance, Role
from control.domain.auth.guards import requires
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import get_case
from control.domain.findings.service import get_finding
from control.domain.viewer import service
from control.domain.viewer.controllers import PNG, WindowCenter, WindowWidth, _cached_response
from control.errors import InvalidInputError, NotFoundError
from control.imaging.render import Window
from control.served.artefacts import SliceArtefacts
from control.served.base import ViewerView
from control.served.ct_head import SliceResult, SliceTable
from control.served.registry import SERVED_MODELS
from control.storage import ObjectStore
from medvision_contract.ct_windows import CT_HEAD_WINDOWS
from medvision_contract.preprocess import WINDOW_PRESETS

AuthRequest = Request[AuthUser, object, State]

#: Named display windows (centre, width in HU): the network's head CT windows first.
SLICE_WINDOWS: dict[str, tuple[float, float]] = {
    **WINDOW_PRESETS,
    **{name: (centre, width) for name, centre, width in CT_HEAD_WINDOWS},
}
WindowName = Annotated[
    str | None,
    Parameter(description=f"a named window: {', '.join(SLICE_WINDOWS)} (or centre/width)"),
]


class SliceOut(msgspec.Struct):
    """One slice: its number, instance, position along the normal and results."""

    index: int
    instance_id: uuid.UUID
    position_mm: float
    probabilities: dict[str, float]
    positive: list[str]

    @classmethod
    def of(cls, row: SliceResult) -> SliceOut:
        return cls(
            index=row.index,
            instance_id=uuid.UUID(row.instance_id),
            position_mm=row.position_mm,
            probabilities=row.probabilities,
            positive=row.positive,
        )


class SliceTableOut(msgspec.Struct):
    """A finding's per-slice results in slice order, with the labels and thresholds used."""

    labels: list[str]
    thresholds: dict[str, float]
    spacing_mm: list[float]
    slices: list[SliceOut]


def _require_slices(finding: Finding) -> SliceArtefacts:
    model = SERVED_MODELS.get(finding.model_name)
    if model is None or ViewerView.SLICE_HEATMAP not in model.viewer:
        raise InvalidInputError(
            f"finding {finding.id} is not read slice by slice", code="not_a_slice_finding"
        )
    return SliceArtefacts.of(finding)


async def _slice_table(store: ObjectStore, artefacts: SliceArtefacts) -> SliceTable:
    return SliceTable.from_json(await store.get(artefacts.slices))


def _slice(table: SliceTable, index: int) -> SliceResult:
    if not 0 <= index < len(table.slices):
        raise NotFoundError(
            f"no slice {index}: the series has {len(table.slices)}",
            code="slice_not_found",
            detail={"slices": len(table.slices)},
        )
    return table.slices[index]


def _window(name: str | None, center: float | None, width: float | None) -> Window | None:
    if name is None:
        return service.requested_window(center, width)
    if center is not None or width is not None:
        raise InvalidInputError(
            "give a named window or a centre and width, not both", code="invalid_window"
        )
    if name not in SLICE_WINDOWS:
        raise InvalidInputError(
            f"unknown window {name!r}",
            code="invalid_window",
            detail={"windows": list(SLICE_WINDOWS)},
        )
    return Window(*SLICE_WINDOWS[name])


class SliceViewerController(Controller):
    path = "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/per-slice"
    tags = ["viewer"]
    guards = [requires(Role.ADMIN, Role.RADIOLOGIST)]

    async def _finding(
        self, session: AsyncSession, request: AuthRequest, case_id: uuid.UUID, finding_id: uuid.UUID
    ) -> tuple[Case, SliceArtefacts, SliceTable]:
        case = await get_case(session, case_id, request.user, with_images=False)
        finding = await get_finding(session, case, finding_id)
        artefacts = _require_slices(finding)
        return case, artefacts, await _slice_table(request.app.state.store, artefacts)

    @get("/", operation_id="listFindingSlices")
    async def list_slices(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
    ) -> SliceTableOut:
        """The finding's per-slice probabilities and positive labels, in slice order.
        400 ``not_a_slice_finding`` for a finding not read slice by slice."""
        _, _, table = await self._finding(db_session, request, case_id, finding_id)
        return SliceTableOut(
            labels=table.labels,
            thresholds=table.thresholds,
            spacing_mm=table.spacing_mm,
            slices=[SliceOut.of(row) for row in table.slices],
        )

    @get("/{index:int}/image", operation_id="renderFindingSlice", media_type=PNG)
    async def render_slice(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        index: int,
        window: WindowName = None,
        window_center: WindowCenter = None,
        window_width: WindowWidth = None,
    ) -> Response[bytes]:
        """Slice ``index`` as a grey PNG under a named window (``brain``, ``subdural``,
        ``bone``, ...) or a centre/width in HU; the image's own window without either.
        404 ``slice_not_found``, 400 ``invalid_window``."""
        case, _, table = await self._finding(db_session, request, case_id, finding_id)
        chosen = _window(window, window_center, window_width)
        row = _slice(table, index)
        instance: Instance = await service.get_instance(
            db_session, case, uuid.UUID(row.instance_id)
        )
        store = request.app.state.store
        return await _cached_response(
            request,
            case,
            {"window": window, "window_center": window_center, "window_width": window_width},
            lambda: service.frame_png(store, instance, 0, chosen),
        )

    @get("/{index:int}/heatmap", operation_id="getFindingSliceHeatmap", media_type=PNG)
    async def get_heatmap(
        self,
        request: AuthRequest,
        db_session: AsyncSession,
        case_id: uuid.UUID,
        finding_id: uuid.UUID,
        index: int,
    ) -> Response[bytes]:
        """Slice ``index``'s heat map of ``any`` haemorrhage as an 8-bit grey PNG (0 = none,
        255 = strongest; all 0 on a slice below the threshold), covering the slice at reduced
        size with its aspect ratio; the viewer scales and colours it."""
        case, artefacts, table = await self._finding(db_session, request, case_id, finding_id)
        _slice(table, index)
        store = request.app.state.store
        count = len(table.slices)
        return await _cached_response(
            request,
            case,
            {},
            lambda: service.cam_map_png(store, service.CamRef(artefacts.heatmaps, index, count)),
        )
