"""``brats``: brain tumour segmentation of an MR brain study (T1, T1ce, T2, FLAIR).

Routing: an MR brain study with all four sequences (the fullest series of each), or a
4-channel NIfTI volume; an MR brain study missing sequences waits, with the reason. Triton:
``VOLUME`` (FP32 [4, X, Y, Z] on the FLAIR grid) and ``SPACING_MM`` in; ``LABELS`` and
``REGION_ML`` out. One finding per study: the label map and the volume as NIfTI, region
volumes in ml.
"""

from __future__ import annotations

import asyncio
import functools
import io

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom

from control.db.models import FindingKind, Instance, Series, Study
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.imaging.volumes import (
    BRATS_CHANNELS,
    Volume,
    brats_input,
    nifti_bytes,
    nifti_channels,
    series_volume,
)
from control.results.objects import brats_results
from control.served.artefacts import SegmentationArtefacts
from control.served.base import (
    VOLUME_SUBJECT,
    FindingDraft,
    Job,
    Route,
    RoutingRules,
    ServedModel,
    ViewerView,
    body_part,
    model_info,
    sha256_of,
    timed,
)
from export.drift_reference import input_statistics
from medvision_contract.served import BRATS

#: Region names of the findings' ``volumes_ml``, in ``REGION_ML`` order.
REGIONS = ("enhancing_tumour", "tumour_core", "whole_tumour")


def _route(name: str, reason: str, **what: object) -> Route:
    return Route(name, reason, subjects=[VOLUME_SUBJECT], **what)  # type: ignore[arg-type]


def route_brain_mr(study: Study, rules: RoutingRules) -> Route | None:
    """The study's 4-channel volume or its four sequences; None for a study without MR
    brain series."""
    brain = [
        series
        for series in study.series
        if series.modality.upper() == "MR" and body_part(series) in rules.brain_body_parts
    ]
    if not brain:
        return None
    for series in brain:
        for instance in series.instances:
            if instance.sop_class_uid == NIFTI_SOP_CLASS:
                return _route(BRATS.name, "4-channel MRI volume", volume=instance)
    channels: dict[str, Series] = {}
    for series in brain:
        kind = series.sequence_type
        if kind in BRATS_CHANNELS and series.instances:
            current = channels.get(kind)
            if current is None or len(series.instances) > len(current.instances):
                channels[kind] = series
    missing = [kind for kind in BRATS_CHANNELS if kind not in channels]
    if missing:
        return Route(None, f"MR brain study without {', '.join(missing)}")
    return _route(BRATS.name, "MR brain study with T1, T1ce, T2 and FLAIR", channels=channels)


def _series_volume_of_files(payloads: list[bytes]) -> Volume:
    """:func:`series_volume` of DICOM files (parsed here, in the worker thread)."""
    return series_volume([pydicom.dcmread(io.BytesIO(payload)) for payload in payloads])


async def _volumes_of_series(route: Route, job: Job) -> dict[str, Volume]:
    volumes = {}
    for channel in BRATS_CHANNELS:
        payloads = [
            await job.store.get(instance.object_key, expected_sha256=instance.sha256)
            for instance in route.channels[channel].instances
        ]
        volumes[channel] = await anyio.to_thread.run_sync(_series_volume_of_files, payloads)
    return volumes


async def brats_volume(
    job: Job,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """(VOLUME [4, X, Y, Z], SPACING_MM [3], affine) for a routed MRI study."""
    route = job.route
    if route.volume is not None:
        instance: Instance = route.volume
        payload = await job.store.get(instance.object_key, expected_sha256=instance.sha256)
        data, affine = await anyio.to_thread.run_sync(nifti_channels, payload)
        spacing = np.linalg.norm(affine[:3, :3], axis=0).astype(np.float32)
        return data.astype(np.float32, copy=False), spacing, affine
    volumes = await _volumes_of_series(route, job)
    volume, spacing, affine = await anyio.to_thread.run_sync(brats_input, volumes)
    return volume, spacing, affine


async def run_brats(job: Job) -> list[FindingDraft]:
    """One segmentation finding: the label map as NIfTI and the tumour volumes in ml."""
    store = job.store
    model, (volume, spacing, affine) = await asyncio.gather(
        model_info(job.triton, BRATS), brats_volume(job)
    )
    outputs, latency_ms = await timed(
        job.triton.infer(
            BRATS.name,
            {"VOLUME": volume, "SPACING_MM": spacing},
            ["LABELS", "REGION_ML"],
            timeout_s=job.timeout_s,
            output_bytes={"LABELS": int(np.prod(volume.shape[1:]))},
        )
    )
    labels, region_ml = outputs["LABELS"], outputs["REGION_ML"]
    segmentation_key = f"{job.artifact_prefix}/segmentation.nii.gz"
    await store.put(
        segmentation_key,
        await anyio.to_thread.run_sync(nifti_bytes, labels.astype(np.uint8), affine),
        content_type="application/gzip",
    )
    if job.route.volume is not None:
        volume_key = job.route.volume.object_key
    else:
        volume_key = f"{job.artifact_prefix}/volume.nii.gz"
        channels_last = np.moveaxis(volume, 0, -1)
        await store.put(
            volume_key,
            await anyio.to_thread.run_sync(nifti_bytes, channels_last, affine),
            content_type="application/gzip",
        )
    volumes_ml = {name: round(float(v), 3) for name, v in zip(REGIONS, region_ml, strict=True)}
    input_stats = await anyio.to_thread.run_sync(
        functools.partial(input_statistics, volume, spacing.tolist(), channels_first=True)
    )
    return [
        FindingDraft(
            subject=VOLUME_SUBJECT,
            kind=FindingKind.SEGMENTATION,
            model=model,
            labels=[name for name, v in volumes_ml.items() if v > 0],
            volumes_ml=volumes_ml,
            artifacts=SegmentationArtefacts(
                segmentation=segmentation_key, volume=volume_key
            ).stored(),
            input_sha256=sha256_of(volume, spacing),
            output_sha256=sha256_of(labels, region_ml),
            latency_ms=round(latency_ms, 3),
            input_stats=input_stats,
        )
    ]


BRATS_MODEL = ServedModel(
    contract=BRATS,
    finding_kind=FindingKind.SEGMENTATION,
    subject="volume",
    route=route_brain_mr,
    run=run_brats,
    viewer=frozenset({ViewerView.SEGMENTATION}),
    results=brats_results,
    export_kind="brats",
)
