"""What the viewer shows: DICOM frames, headers, heat-map and segmentation overlays.

Objects come from the object store; decoding, rendering and PNG encoding run in worker
threads. Parameters are checked before anything is loaded, with stable error codes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataelem import DataElement
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Case, DecisionAction, Finding, FindingKind, Instance, Series
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.domain.findings.schemas import cam_labels
from control.domain.findings.service import current_decision
from control.domain.viewer.schemas import SegmentationVolume, SliceCounts
from control.domain.viewer.volume_cache import DisplayVolume, load_label_map, load_volume
from control.errors import InvalidInputError, NotFoundError
from control.imaging.cams import unpack_cam
from control.imaging.render import (
    Plane,
    Window,
    apply_window,
    cam_overlay,
    encode_png,
    render_frame,
    require_window,
    segmentation_overlay,
    slice_count,
    volume_slice,
)
from control.imaging.volumes import BRATS_CHANNELS
from control.served.artefacts import CamArtefacts, SegmentationArtefacts
from control.storage import ObjectStore

MASK_CHOICES = ("current", "ai")
"""``ai``: the model's label map; ``current``: the edited mask in force, else the model's."""

#: Binary elements longer than this (base64 characters) are left out of the DICOM JSON.
BULK_DATA_THRESHOLD = 1024
_OMITTED = "medvision:omitted"


async def get_instance(session: AsyncSession, case: Case, instance_id: uuid.UUID) -> Instance:
    """The instance ``instance_id`` of the case's study; NotFoundError otherwise."""
    instance = await session.scalar(
        select(Instance)
        .join(Series, Instance.series_id == Series.id)
        .where(Instance.id == instance_id, Series.study_id == case.study_id)
    )
    if instance is None:
        raise NotFoundError(
            f"instance {instance_id} not found in this case", code="instance_not_found"
        )
    return instance


async def finding_instance(session: AsyncSession, case: Case, finding: Finding) -> Instance:
    """The image a classification finding is about; NotFoundError when it is gone."""
    if finding.instance_id is None:
        raise NotFoundError(
            f"finding {finding.id} has no image (it was removed)", code="instance_not_found"
        )
    return await get_instance(session, case, finding.instance_id)


def require_dicom_image(instance: Instance) -> None:
    """Reject NIfTI volumes, which have no DICOM frames or header (400 ``not_a_dicom_image``)."""
    if instance.sop_class_uid == NIFTI_SOP_CLASS:
        raise InvalidInputError(
            "this instance is a NIfTI volume, not a DICOM image: view it through the "
            "segmentation slice endpoint",
            code="not_a_dicom_image",
        )


def requested_window(center: float | None, width: float | None) -> Window | None:
    """The window given by query parameters, or None for the default window.

    Raises ``InvalidInputError("invalid_window")`` when only one of the two is given, the
    width is not a finite number > 0 or the center is not finite.
    """
    if center is None and width is None:
        return None
    if center is None or width is None:
        raise InvalidInputError(
            "give both window_center and window_width, or neither", code="invalid_window"
        )
    return require_window(center, width)


def require_kind(finding: Finding, kind: FindingKind) -> None:
    """Reject a finding of another kind (400 ``not_a_classification`` / ``not_a_segmentation``)."""
    if finding.kind != kind:
        raise InvalidInputError(
            f"finding {finding.id} is a {finding.kind.value}, not a {kind.value}",
            code=f"not_a_{kind.value}",
        )


@dataclass(frozen=True)
class CamRef:
    """Where the heat map of one label is: the CAM image and the map's place in it."""

    key: str
    index: int
    count: int


def cam_ref(finding: Finding, label: str) -> CamRef:
    """The finding's heat map for ``label``; 404 ``cam_not_found``."""
    labels = cam_labels(finding)
    if label not in labels:
        raise NotFoundError(
            f"the finding has no heat map for {label!r}",
            code="cam_not_found",
            detail={"available": labels},
        )
    return CamRef(CamArtefacts.of(finding).cams, labels.index(label), len(labels))


def require_channel(channel: str) -> str:
    """``channel`` if it names an MRI channel; 400 ``invalid_channel`` otherwise."""
    if channel not in BRATS_CHANNELS:
        raise InvalidInputError(
            f"unknown channel {channel!r}; expected one of {', '.join(BRATS_CHANNELS)}",
            code="invalid_channel",
            detail={"channel": channel},
        )
    return channel


def label_map_source(finding: Finding, mask: str) -> tuple[str, str | None]:
    """``(object key, SHA-256 or None)`` of the label map ``mask`` chooses (see MASK_CHOICES).

    Raises ``InvalidInputError("invalid_mask_choice")`` for an unknown choice.
    """
    if mask not in MASK_CHOICES:
        raise InvalidInputError(
            f"mask must be one of {', '.join(MASK_CHOICES)}, not {mask!r}",
            code="invalid_mask_choice",
        )
    decision = current_decision(finding)
    if (
        mask == "current"
        and decision is not None
        and decision.action == DecisionAction.EDIT
        and decision.mask_key
    ):
        return decision.mask_key, decision.mask_sha256
    return SegmentationArtefacts.of(finding).segmentation, None


async def frame_png(
    store: ObjectStore, instance: Instance, frame: int, window: Window | None
) -> bytes:
    """PNG of frame ``frame`` of a DICOM instance under ``window`` (None: its default)."""
    payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
    return await anyio.to_thread.run_sync(_frame_png, payload, frame, window)


async def header_json(store: ObjectStore, instance: Instance) -> bytes:
    """The stored (de-identified) DICOM header as DICOM JSON, without pixel and bulk data."""
    payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
    return await anyio.to_thread.run_sync(_header_json, payload)


async def cam_overlay_png(
    store: ObjectStore, instance: Instance, cam: CamRef, alpha: float, window: Window | None
) -> bytes:
    """PNG of the instance's first frame with the heat map ``cam`` blended in."""
    payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
    atlas = await store.get(cam.key)
    return await anyio.to_thread.run_sync(_cam_overlay_png, payload, atlas, cam, alpha, window)


async def cam_map_png(store: ObjectStore, cam: CamRef) -> bytes:
    """The heat map ``cam`` alone, as an 8-bit grey PNG at its stored size."""
    atlas = await store.get(cam.key)
    return await anyio.to_thread.run_sync(
        lambda: encode_png(unpack_cam(_decode_cam(atlas), cam.index, cam.count))
    )


async def segmentation_slice_png(
    store: ObjectStore,
    finding: Finding,
    view: tuple[Plane, int, str],
    window: Window | None,
    labels: tuple[str, str | None] | None,
    alpha: float,
) -> bytes:
    """PNG of one slice of the finding's volume, tinted by a label map.

    ``view`` is ``(plane, index, channel)``; ``labels`` the label map's ``(key, sha256)``
    (None: no overlay); ``window`` None means the channel's default window.
    """
    volume = await load_volume(store, volume_key(finding))
    label_map = await load_label_map(store, *labels) if labels is not None else None
    return await anyio.to_thread.run_sync(_slice_png, volume, view, window, label_map, alpha)


async def segmentation_volume(store: ObjectStore, finding: Finding) -> SegmentationVolume:
    """Shape, spacing, slice counts and channels of the finding's volume, with its volumes."""
    volume = await load_volume(store, volume_key(finding))
    _, x, y, z = volume.channels.shape
    shown = (int(x), int(y), int(z))
    return SegmentationVolume(
        shape=list(volume.stored_shape),
        spacing_mm=list(volume.spacing_mm),
        slices=SliceCounts(
            axial=slice_count(shown, "axial"),
            coronal=slice_count(shown, "coronal"),
            sagittal=slice_count(shown, "sagittal"),
        ),
        channels=list(BRATS_CHANNELS),
        volumes_ml=dict(finding.volumes_ml),
    )


def volume_key(finding: Finding) -> str:
    """The object key of a segmentation's 4-channel volume; 404 ``artifact_not_found``."""
    volume = SegmentationArtefacts.of(finding).volume
    if volume is None:
        raise NotFoundError(
            "the finding has no volume object", code="artifact_not_found", detail={"name": "volume"}
        )
    return volume


def _dataset(payload: bytes, *, header_only: bool = False) -> pydicom.Dataset:
    return pydicom.dcmread(BytesIO(payload), stop_before_pixels=header_only)


def _frame_png(payload: bytes, frame: int, window: Window | None) -> bytes:
    return encode_png(render_frame(_dataset(payload), frame, window))


def _omit_bulk_data(_element: DataElement) -> str:
    return _OMITTED


def _without_omitted(value: Any) -> Any:
    """DICOM JSON with every element the bulk data handler marked removed (nested too)."""
    if isinstance(value, dict):
        return {
            name: _without_omitted(item)
            for name, item in value.items()
            if not (isinstance(item, dict) and item.get("BulkDataURI") == _OMITTED)
        }
    if isinstance(value, list):
        return [_without_omitted(item) for item in value]
    return value


def _header_json(payload: bytes) -> bytes:
    header = _dataset(payload, header_only=True).to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_data_element_handler=_omit_bulk_data,
        suppress_invalid_tags=True,
    )
    return json.dumps(_without_omitted(header), separators=(",", ":")).encode()


def _decode_cam(png: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(BytesIO(png)) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def _cam_overlay_png(
    payload: bytes, atlas: bytes, cam: CamRef, alpha: float, window: Window | None
) -> bytes:
    base = render_frame(_dataset(payload), 0, window)
    heat = unpack_cam(_decode_cam(atlas), cam.index, cam.count)
    return encode_png(cam_overlay(base, heat, alpha))


def _slice_png(
    volume: DisplayVolume,
    view: tuple[Plane, int, str],
    window: Window | None,
    label_map: npt.NDArray[Any] | None,
    alpha: float,
) -> bytes:
    plane, index, channel = view
    section = volume_slice(volume.channel(channel), plane, index)
    grey = apply_window(section, window or volume.windows[channel])
    if label_map is None:
        return encode_png(grey)
    return encode_png(segmentation_overlay(grey, volume_slice(label_map, plane, index), alpha))
