"""``cxr``: chest radiograph classification (ChestX-ray14 labels) with label heat maps.

Routing: every CR/DX image of the chest (modalities and body parts configurable) is read,
one finding per radiograph. Triton: ``PIXELS`` (UINT16 after the modality LUT) and
``INVERT`` (MONOCHROME1) in; ``PROBABILITIES``, ``POSITIVE`` and ``CAM`` out. Findings keep
the probabilities, the thresholds the export published and the CAMs as one PNG atlas.
"""

from __future__ import annotations

import asyncio
import io

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.pixels.processing import apply_modality_lut

from control.db.models import FindingKind, Instance, Study
from control.errors import InvalidInputError
from control.imaging.cams import atlas_png
from control.results.objects import cxr_results
from control.served.artefacts import CamArtefacts
from control.served.base import (
    FindingDraft,
    Job,
    Route,
    RoutingRules,
    ServedModel,
    ViewerView,
    body_part,
    heat_map_pixels,
    model_info,
    sha256_of,
    timed,
)
from export.drift_reference import input_statistics
from medvision_contract.served import CXR


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


def input_provenance(
    pixels: npt.NDArray[np.uint16], invert: npt.NDArray[np.bool_]
) -> tuple[str, dict[str, float]]:
    """The SHA-256 of the tensors sent to Triton and the drift statistics of the image."""
    return sha256_of(pixels, invert), input_statistics(pixels)


def route_chest(study: Study, rules: RoutingRules) -> Route | None:
    """Every chest radiograph of the study, or None when it has none."""
    chest = [
        instance
        for series in study.series
        if series.modality.upper() in rules.chest_modalities
        and body_part(series) in rules.chest_body_parts
        for instance in series.instances
    ]
    if not chest:
        return None
    return Route(
        CXR.name,
        "chest radiograph",
        instances=chest,
        subjects=[str(instance.id) for instance in chest],
        per_instance=True,
    )


async def run_cxr(job: Job) -> list[FindingDraft]:
    """One classification finding per chest radiograph, its CAMs stored as one PNG image."""
    store, triton, route = job.store, job.triton, job.route

    async def read_pixels(instance: Instance) -> tuple[npt.NDArray[np.uint16], bool]:
        payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
        return await anyio.to_thread.run_sync(cxr_pixels, payload)

    # The provenance is read while the first image is fetched and decoded.
    model, post, first = await asyncio.gather(
        model_info(triton, CXR),
        triton.model_parameters(CXR.postprocess),
        read_pixels(route.instances[0]),
    )
    labels = post["labels"].split(",")
    thresholds = [float(value) for value in post["thresholds"].split(",")]
    drafts = []
    for index, instance in enumerate(route.instances):
        pixels, invert = first if index == 0 else await read_pixels(instance)
        invert_flag = np.array([invert], dtype=np.bool_)

        # The input's hash and drift statistics are computed while Triton works.
        (outputs, latency_ms), (input_sha256, input_stats) = await asyncio.gather(
            timed(
                triton.infer(
                    CXR.name,
                    {"PIXELS": pixels, "INVERT": invert_flag},
                    ["PROBABILITIES", "POSITIVE", "CAM"],
                    timeout_s=job.timeout_s,
                    output_bytes={"CAM": len(labels) * heat_map_pixels(pixels.shape, post)},
                )
            ),
            anyio.to_thread.run_sync(input_provenance, pixels, invert_flag),
        )
        probabilities, positive, cam = outputs["PROBABILITIES"], outputs["POSITIVE"], outputs["CAM"]
        png = await anyio.to_thread.run_sync(atlas_png, cam)
        cam_key = f"{job.artifact_prefix}/{instance.id}/cams.png"
        stored_cams = await store.put(cam_key, png, content_type="image/png")
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
                artifacts=CamArtefacts(cams=cam_key, cam_labels=",".join(labels)).stored(),
                input_sha256=input_sha256,
                # The CAM as kept (its stored image), not the 14 maps: hashing those would
                # cost more than the rest of the bookkeeping together.
                output_sha256=sha256_of(
                    probabilities,
                    positive,
                    np.frombuffer(bytes.fromhex(stored_cams.sha256), np.uint8),
                ),
                latency_ms=round(latency_ms, 3),
                input_stats=input_stats,
            )
        )
    return drafts


CXR_MODEL = ServedModel(
    contract=CXR,
    finding_kind=FindingKind.CLASSIFICATION,
    subject="image",
    route=route_chest,
    run=run_cxr,
    viewer=frozenset({ViewerView.CAM}),
    results=cxr_results,
    export_kind="cxr",
)
