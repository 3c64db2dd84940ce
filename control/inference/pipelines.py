"""From stored objects to Triton and back: what each pipeline sends and what it keeps.

A pipeline reads the case's stored images, calls its Triton ensemble and returns finding
drafts; the artifacts it writes (CAM images, segmentation volumes) have keys derived from
the job id, so running a job twice writes the same objects again, never new ones.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.pixels.processing import apply_modality_lut

from control.db.models import Case, FindingKind, Instance
from control.errors import InvalidInputError
from control.imaging.cams import pack_cams
from control.imaging.render import encode_png
from control.imaging.volumes import (
    BRATS_CHANNELS,
    Volume,
    brats_input,
    nifti_bytes,
    nifti_channels,
    series_volume,
)
from control.inference.routing import BRATS, CXR, VOLUME_SUBJECT, Route
from control.storage import ObjectStore
from control.triton.client import TritonClient
from export.drift_reference import input_statistics

CXR_NETWORK = "cxr_net"
BRATS_NETWORK = "brats_net"
REGIONS = ("enhancing_tumour", "tumour_core", "whole_tumour")


@dataclass(frozen=True)
class ModelInfo:
    """What produced a finding, as Triton's model configuration says."""

    model_name: str
    network_name: str
    model_version: str
    training_run_id: str | None
    synthetic: bool


@dataclass
class FindingDraft:
    """A finding before it is written: everything but its database identity."""

    subject: str
    kind: FindingKind
    model: ModelInfo
    instance_id: uuid.UUID | None = None
    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    #: SHA-256 of the tensors sent to Triton.
    input_sha256: str = ""
    #: SHA-256 of the outputs as kept: the result tensors (for CXR, probabilities, positive
    #: flags and the SHA-256 of the stored CAM image; for BraTS, the label map and volumes).
    output_sha256: str = ""
    latency_ms: float = 0.0
    #: Simple input statistics for drift monitoring (export.drift_reference.input_statistics).
    input_stats: dict[str, float] = field(default_factory=dict)


def _sha256(*arrays: npt.NDArray[Any]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


async def model_info(triton: TritonClient, ensemble: str, network: str) -> ModelInfo:
    """The served network's provenance, read from its config.pbtxt ``parameters``."""
    parameters = await triton.model_parameters(network)
    return ModelInfo(
        model_name=ensemble,
        network_name=network,
        model_version=parameters.get("model_version") or "unversioned",
        training_run_id=parameters.get("training_run_id") or None,
        synthetic=parameters.get("synthetic_data") == "true",
    )


def artifact_prefix(case: Case, job_id: uuid.UUID) -> str:
    return f"derived/cases/{case.id}/jobs/{job_id}"


def cxr_pixels(payload: bytes) -> tuple[npt.NDArray[np.uint16], bool]:
    """The first frame after the modality LUT as UINT16 (clipped) and whether it is MONOCHROME1."""
    ds = pydicom.dcmread(io.BytesIO(payload))
    photometric = str(ds.get("PhotometricInterpretation") or "")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InvalidInputError(
            f"chest radiographs must be greyscale, not {photometric or 'unknown'}",
            code="unsupported_photometric",
            detail={"photometric_interpretation": photometric},
        )
    pixels = ds.pixel_array
    if pixels.ndim == 3:
        pixels = pixels[0]
    invert = photometric == "MONOCHROME1"
    identity = (
        float(ds.get("RescaleSlope", 1) or 1) == 1
        and float(ds.get("RescaleIntercept", 0) or 0) == 0
    )
    if identity and "ModalityLUTSequence" not in ds and pixels.dtype in (np.uint8, np.uint16):
        return pixels.astype(np.uint16, copy=False), invert  # stored values are the values
    values = apply_modality_lut(pixels, ds)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16), invert


def _cam_png(cam: npt.NDArray[np.uint8]) -> bytes:
    return encode_png(pack_cams(cam))


async def run_cxr(
    case: Case,
    job_id: uuid.UUID,
    route: Route,
    store: ObjectStore,
    triton: TritonClient,
    timeout_s: float,
) -> list[FindingDraft]:
    """One classification finding per chest radiograph, its CAMs stored as PNG images."""

    async def read_pixels(instance: Instance) -> tuple[npt.NDArray[np.uint16], bool]:
        payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
        return await anyio.to_thread.run_sync(cxr_pixels, payload)

    # The provenance is read while the first image is fetched and decoded.
    model, post, first = await asyncio.gather(
        model_info(triton, CXR, CXR_NETWORK),
        triton.model_parameters("cxr_postprocess"),
        read_pixels(route.instances[0]),
    )
    labels = post["labels"].split(",")
    thresholds = [float(value) for value in post["thresholds"].split(",")]
    drafts = []
    for index, instance in enumerate(route.instances):
        pixels, invert = first if index == 0 else await read_pixels(instance)
        invert_flag = np.array([invert], dtype=np.bool_)
        started = time.perf_counter()
        outputs = await triton.infer(
            CXR,
            {"PIXELS": pixels, "INVERT": invert_flag},
            ["PROBABILITIES", "POSITIVE", "CAM"],
            timeout_s=timeout_s,
            output_bytes={"CAM": len(labels) * pixels.size},
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        probabilities, positive, cam = outputs["PROBABILITIES"], outputs["POSITIVE"], outputs["CAM"]
        png = await anyio.to_thread.run_sync(_cam_png, cam)
        input_stats = await anyio.to_thread.run_sync(input_statistics, pixels)
        cam_key = f"{artifact_prefix(case, job_id)}/{instance.id}/cams.png"
        stored_cams = await store.put(cam_key, png, content_type="image/png")
        artifacts = {"cams": cam_key, "cam_labels": ",".join(labels)}
        drafts.append(
            FindingDraft(
                subject=str(instance.id),
                kind=FindingKind.CLASSIFICATION,
                model=model,
                instance_id=instance.id,
                labels=[label for label, flag in zip(labels, positive, strict=True) if flag],
                probabilities={
                    label: round(float(p), 6)
                    for label, p in zip(labels, probabilities, strict=True)
                },
                thresholds=dict(zip(labels, thresholds, strict=True)),
                artifacts=artifacts,
                input_sha256=_sha256(pixels, invert_flag),
                # The CAM as kept (its stored image), not the 14 full-size maps: hashing
                # those would cost more than the rest of the bookkeeping together.
                output_sha256=_sha256(
                    probabilities,
                    positive,
                    np.frombuffer(bytes.fromhex(stored_cams.sha256), np.uint8),
                ),
                latency_ms=round(latency_ms, 3),
                input_stats=input_stats,
            )
        )
    return drafts


async def _volume_from_series(route: Route, store: ObjectStore) -> dict[str, Volume]:
    volumes = {}
    for channel in BRATS_CHANNELS:
        series = route.channels[channel]
        payloads = [
            await store.get(instance.object_key, expected_sha256=instance.sha256)
            for instance in series.instances
        ]
        volumes[channel] = await anyio.to_thread.run_sync(_series_volume_of_files, payloads)
    return volumes


def _series_volume_of_files(payloads: list[bytes]) -> Volume:
    """:func:`series_volume` of DICOM files (parsed here, in the worker thread)."""
    return series_volume([pydicom.dcmread(io.BytesIO(payload)) for payload in payloads])


async def brats_volume(
    route: Route, store: ObjectStore
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """(VOLUME [4, X, Y, Z], SPACING_MM [3], affine) for a routed MRI study."""
    if route.volume is not None:
        instance: Instance = route.volume
        payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
        data, affine = await anyio.to_thread.run_sync(nifti_channels, payload)
        spacing = np.linalg.norm(affine[:3, :3], axis=0).astype(np.float32)
        return data.astype(np.float32, copy=False), spacing, affine
    volumes = await _volume_from_series(route, store)
    volume, spacing, affine = await anyio.to_thread.run_sync(brats_input, volumes)
    return volume, spacing, affine


async def run_brats(
    case: Case,
    job_id: uuid.UUID,
    route: Route,
    store: ObjectStore,
    triton: TritonClient,
    timeout_s: float,
) -> list[FindingDraft]:
    """One segmentation finding: the label map as NIfTI and the tumour volumes in ml."""
    model, (volume, spacing, affine) = await asyncio.gather(
        model_info(triton, BRATS, BRATS_NETWORK), brats_volume(route, store)
    )
    started = time.perf_counter()
    outputs = await triton.infer(
        BRATS,
        {"VOLUME": volume, "SPACING_MM": spacing},
        ["LABELS", "REGION_ML"],
        timeout_s=timeout_s,
        output_bytes={"LABELS": int(np.prod(volume.shape[1:]))},
    )
    latency_ms = (time.perf_counter() - started) * 1000.0
    labels, region_ml = outputs["LABELS"], outputs["REGION_ML"]
    prefix = artifact_prefix(case, job_id)
    artifacts = {}
    segmentation_key = f"{prefix}/segmentation.nii.gz"
    await store.put(
        segmentation_key,
        await anyio.to_thread.run_sync(nifti_bytes, labels.astype(np.uint8), affine),
        content_type="application/gzip",
    )
    artifacts["segmentation"] = segmentation_key
    if route.volume is not None:
        artifacts["volume"] = route.volume.object_key
    else:
        volume_key = f"{prefix}/volume.nii.gz"
        channels_last = np.moveaxis(volume, 0, -1)
        await store.put(
            volume_key,
            await anyio.to_thread.run_sync(nifti_bytes, channels_last, affine),
            content_type="application/gzip",
        )
        artifacts["volume"] = volume_key
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
            artifacts=artifacts,
            input_sha256=_sha256(volume, spacing),
            output_sha256=_sha256(labels, region_ml),
            latency_ms=round(latency_ms, 3),
            input_stats=input_stats,
        )
    ]


PIPELINES = {CXR: run_cxr, BRATS: run_brats}
