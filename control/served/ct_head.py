"""``ct_head``: intracranial haemorrhage on non-contrast head CT (RSNA 2019 labels).

Routing: the fullest CT series of the head (body parts configurable, default HEAD/BRAIN) is
read as one volume; jobs wait ``ct_series_settle_s`` after the last slice arrived, so a
series sent slice by slice is read whole. Triton: ``VOLUME`` (INT16 HU, slices first) and
``SPACING_MM`` in; ``SLICE_PROBABILITIES``, ``PROBABILITIES``, ``POSITIVE`` and ``HEATMAP``
out. One finding per study with the study-level probabilities; per-slice results and heat
maps are its artefacts (:class:`SliceTable`, a PNG atlas of one map per slice).
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import asdict, dataclass

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom

from control.config import Settings
from control.db.models import FindingKind, Instance, Study
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.errors import InvalidInputError
from control.imaging.cams import atlas_png
from control.imaging.ct import CtVolume, head_ct_volume
from control.results.objects import ct_head_results
from control.served.artefacts import SliceArtefacts
from control.served.base import (
    VOLUME_SUBJECT,
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
from medvision_contract.served import CT_HEAD


@dataclass(frozen=True)
class SliceResult:
    """One slice of the series: where it is and what the network saw on it."""

    index: int
    instance_id: str
    position_mm: float
    probabilities: dict[str, float]
    positive: list[str]


@dataclass(frozen=True)
class SliceTable:
    """The per-slice results of a ``ct_head`` finding (stored as JSON), in slice order."""

    labels: list[str]
    thresholds: dict[str, float]
    spacing_mm: list[float]
    slices: list[SliceResult]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> SliceTable:
        """The table stored by :meth:`to_json`; ``InvalidInputError`` (``corrupt_artifact``)
        for anything else."""
        try:
            raw = json.loads(payload)
            return cls(
                labels=list(raw["labels"]),
                thresholds=dict(raw["thresholds"]),
                spacing_mm=list(raw["spacing_mm"]),
                slices=[SliceResult(**item) for item in raw["slices"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                "the stored slice table is unreadable", code="corrupt_artifact"
            ) from exc


def route_head_ct(study: Study, rules: RoutingRules) -> Route | None:
    """The study's fullest head CT series (its slices), or None without one."""
    candidates = [
        series
        for series in study.series
        if series.modality.upper() == "CT"
        and body_part(series) in rules.ct_head_body_parts
        and any(i.sop_class_uid != NIFTI_SOP_CLASS for i in series.instances)
    ]
    if not candidates:
        return None
    series = max(candidates, key=lambda s: len(s.instances))
    return Route(
        CT_HEAD.name,
        "non-contrast head CT",
        instances=list(series.instances),
        subjects=[VOLUME_SUBJECT],
    )


def _volume_of_files(payloads: list[bytes]) -> CtVolume:
    return head_ct_volume([pydicom.dcmread(io.BytesIO(payload)) for payload in payloads])


async def run_ct_head(job: Job) -> list[FindingDraft]:
    """One finding for the series: study-level probabilities, per-slice table, heat maps."""
    store, triton, instances = job.store, job.triton, job.route.instances
    payloads = [
        await store.get(instance.object_key, expected_sha256=instance.sha256)
        for instance in instances
    ]
    model, post, volume = await asyncio.gather(
        model_info(triton, CT_HEAD),
        triton.model_parameters(CT_HEAD.postprocess),
        anyio.to_thread.run_sync(_volume_of_files, payloads),
    )
    labels = post["labels"].split(",")
    thresholds = dict(zip(labels, (float(v) for v in post["thresholds"].split(",")), strict=True))
    outputs, latency_ms = await timed(
        triton.infer(
            CT_HEAD.name,
            {"VOLUME": volume.hu, "SPACING_MM": volume.spacing_mm},
            ["SLICE_PROBABILITIES", "PROBABILITIES", "POSITIVE", "HEATMAP"],
            timeout_s=job.timeout_s,
            output_bytes={"HEATMAP": len(volume.hu) * heat_map_pixels(volume.hu.shape[1:], post)},
        )
    )
    slice_probabilities = outputs["SLICE_PROBABILITIES"]
    probabilities, positive, heatmap = (
        outputs["PROBABILITIES"],
        outputs["POSITIVE"],
        outputs["HEATMAP"],
    )
    if slice_probabilities.shape != (volume.hu.shape[0], len(labels)) or heatmap.ndim != 3:
        raise InvalidInputError(
            f"ct_head answered {slice_probabilities.shape} slice probabilities and a "
            f"{heatmap.shape} heat map for {volume.hu.shape[0]} slices",
            code="model_output_invalid",
        )
    table = _slice_table(instances, volume, labels, thresholds, slice_probabilities)
    heatmaps_key = f"{job.artifact_prefix}/heatmaps.png"
    slices_key = f"{job.artifact_prefix}/slices.json"
    stored_maps = await store.put(
        heatmaps_key,
        await anyio.to_thread.run_sync(atlas_png, heatmap),
        content_type="image/png",
    )
    stored_table = await store.put(slices_key, table.to_json(), content_type="application/json")
    return [
        FindingDraft(
            subject=VOLUME_SUBJECT,
            kind=FindingKind.CLASSIFICATION,
            model=model,
            labels=[label for label, flag in zip(labels, positive, strict=True) if flag],
            probabilities={
                label: round(float(p), 6) for label, p in zip(labels, probabilities, strict=True)
            },
            thresholds=thresholds,
            artifacts=SliceArtefacts(slices=slices_key, heatmaps=heatmaps_key).stored(),
            input_sha256=sha256_of(volume.hu, volume.spacing_mm),
            output_sha256=sha256_of(
                slice_probabilities,
                probabilities,
                positive,
                np.frombuffer(bytes.fromhex(stored_maps.sha256), np.uint8),
                np.frombuffer(bytes.fromhex(stored_table.sha256), np.uint8),
            ),
            latency_ms=round(latency_ms, 3),
            input_stats=await anyio.to_thread.run_sync(
                input_statistics, volume.hu, volume.spacing_mm.tolist()
            ),
        )
    ]


def _slice_table(
    instances: list[Instance],
    volume: CtVolume,
    labels: list[str],
    thresholds: dict[str, float],
    slice_probabilities: npt.NDArray[np.float32],
) -> SliceTable:
    rows = []
    for k, (source, position) in enumerate(
        zip(volume.source_index, volume.position_mm, strict=True)
    ):
        values = {
            label: round(float(p), 6)
            for label, p in zip(labels, slice_probabilities[k], strict=True)
        }
        rows.append(
            SliceResult(
                index=k,
                instance_id=str(instances[source].id),
                position_mm=round(position, 3),
                probabilities=values,
                positive=[label for label in labels if values[label] >= thresholds[label]],
            )
        )
    return SliceTable(
        labels=labels,
        thresholds=thresholds,
        spacing_mm=[round(float(v), 4) for v in volume.spacing_mm],
        slices=rows,
    )


def _settle_s(settings: Settings) -> float:
    return settings.ct_series_settle_s


CT_HEAD_MODEL = ServedModel(
    contract=CT_HEAD,
    finding_kind=FindingKind.CLASSIFICATION,
    subject="volume",
    route=route_head_ct,
    run=run_ct_head,
    viewer=frozenset({ViewerView.SLICE_HEATMAP}),
    results=ct_head_results,
    export_kind="ct_head",
    settle_s=_settle_s,
)
