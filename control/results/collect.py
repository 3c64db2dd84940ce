"""What a signed-off case says, collected from the database and the object store.

The result objects report the radiologist's reading, not the raw AI output:

- chest X-ray (a classification finding): per label the AI probability and call, and the
  decision in force on the finding (the last of its decision chain, see
  :func:`control.domain.findings.service.current_decision`) applied to the label: an
  ``accept`` keeps the AI's call, a ``reject`` means the finding is absent (no label
  positive), an ``edit`` carries the final positive label set. Each label reports that
  decision (``accepted`` / ``rejected`` / ``edited``, ``none`` before any decision — only a
  preliminary SR has that) with its reason.
- brain MRI (a segmentation finding): the mask in force — the radiologist's latest edited
  mask, else the AI's label map — on the FLAIR grid the pipeline segmented (voxel order of
  :func:`control.imaging.volumes.series_volume` of the FLAIR series), with its region
  volumes (the edit's when the edit is in force).

The verifier is the user who signed the case off (full name, else username), at the
sign-off time, for the organisation ``MEDVISION_RESULTS_ORGANIZATION``; the algorithm is
the finding's recorded provenance. All values here are MedVision's pseudonymous ones.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pydicom
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings
from control.db.models import Case, DecisionAction, Finding, FindingKind, Instance, Series, User
from control.domain.findings.service import current_decision
from control.errors import InvalidInputError, NotFoundError
from control.imaging.volumes import nifti_image
from control.results.content import (
    Algorithm,
    BratsResult,
    ClassificationReport,
    LabelReading,
    Verifier,
)
from control.results.jobs import BRATS_SEG, BRATS_SR, CXR_SR_PRELIMINARY, result_uids
from control.results.objects import CT_HEAD_SR
from control.served.artefacts import SegmentationArtefacts, SliceArtefacts
from control.served.base import VOLUME_SUBJECT, RoutingRules
from control.served.ct_head import SliceTable
from control.served.registry import route_study
from control.storage import ObjectStore

__all__ = [
    "CaseFacts",
    "algorithm_of",
    "collect_brats",
    "collect_ct_head",
    "collect_cxr",
    "label_readings",
    "load_facts",
    "mask_in_force",
    "verifier_of",
]

_DECISION_WORDS = {
    DecisionAction.ACCEPT: "accepted",
    DecisionAction.REJECT: "rejected",
    DecisionAction.EDIT: "edited",
}


def label_readings(finding: Finding) -> list[LabelReading]:
    """Every scored label of a classification finding, in the model's order, with the
    decision in force applied (see the module docstring)."""
    decision = current_decision(finding)
    ai_positive = set(finding.labels)
    word = _DECISION_WORDS[decision.action] if decision is not None else "none"
    reason = decision.reason if decision is not None else None
    edited = set(decision.labels or []) if decision is not None else set()
    readings = []
    for label, probability in finding.probabilities.items():
        positive = label in ai_positive
        if decision is None or decision.action == DecisionAction.ACCEPT:
            final = positive
        elif decision.action == DecisionAction.REJECT:
            final = False
        else:
            final = label in edited
        readings.append(
            LabelReading(
                label=label,
                probability=float(probability),
                ai_positive=positive,
                final_positive=final,
                decision=word,
                reason=reason,
            )
        )
    return readings


def mask_in_force(finding: Finding) -> tuple[str, str | None, str]:
    """``(object key, SHA-256 or None, "edited" | "ai")`` of a segmentation's mask in force:
    the edit in force's mask, else the AI's label map."""
    decision = current_decision(finding)
    if decision is not None and decision.action == DecisionAction.EDIT and decision.mask_key:
        return decision.mask_key, decision.mask_sha256, "edited"
    return SegmentationArtefacts.of(finding).segmentation, None, "ai"


def region_ml_in_force(finding: Finding) -> dict[str, float]:
    """The region volumes of the mask in force (the edit's, else the AI's)."""
    decision = current_decision(finding)
    if decision is not None and decision.action == DecisionAction.EDIT and decision.volumes_ml:
        return dict(decision.volumes_ml)
    return dict(finding.volumes_ml)


def algorithm_of(finding: Finding) -> Algorithm:
    """The finding's recorded provenance as the SR's algorithm identification."""
    return Algorithm(
        name=finding.model_name,
        version=finding.model_version,
        training_run=finding.training_run_id,
        synthetic=finding.synthetic_model,
    )


async def verifier_of(session: AsyncSession, case: Case, settings: Settings) -> Verifier:
    """The radiologist who signed ``case`` off; InvalidInputError when it is not signed off."""
    if case.signed_off_at is None:
        raise InvalidInputError("the case is not signed off", code="case_not_signed_off")
    user = await session.get(User, case.signed_off_by_id) if case.signed_off_by_id else None
    name = (user.full_name or user.username) if user is not None else "unknown"
    return Verifier(
        name=name, organization=settings.results_organization, verified_at=case.signed_off_at
    )


async def _dataset(
    store: ObjectStore, instance: Instance, *, pixels: bool = True
) -> pydicom.Dataset:
    payload = await store.get(instance.object_key, expected_sha256=instance.sha256)
    return await anyio.to_thread.run_sync(
        lambda: pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=not pixels)
    )


@dataclass(frozen=True)
class CaseFacts:
    """What the database says about one result object, read in one short transaction (no
    connection is held while objects are fetched and built)."""

    case: Case  # with its study, series and instances loaded
    finding: Finding  # with its decisions loaded
    instance: Instance | None  # the radiograph of a chest X-ray finding
    verifier: Verifier | None  # None for a preliminary object


async def load_facts(
    session: AsyncSession,
    case_id: uuid.UUID,
    finding_id: uuid.UUID,
    settings: Settings,
    *,
    preliminary: bool,
) -> CaseFacts:
    """The case, finding, source radiograph and verifier of one result object.

    NotFoundError ``case_not_found`` / ``instance_not_found`` when they are gone.
    """
    case = await session.get(Case, case_id)
    finding = await session.get(Finding, finding_id)
    if case is None or finding is None or finding.case_id != case.id:
        raise NotFoundError("the case or its finding is gone", code="case_not_found")
    instance = None
    if finding.kind == FindingKind.CLASSIFICATION and finding.subject != VOLUME_SUBJECT:
        instance = await session.get(Instance, finding.instance_id) if finding.instance_id else None
        if instance is None:
            raise NotFoundError("the finding's image was removed", code="instance_not_found")
    verifier = None if preliminary else await verifier_of(session, case, settings)
    return CaseFacts(case, finding, instance, verifier)


async def collect_cxr(
    store: ObjectStore, settings: Settings, facts: CaseFacts, object_name: str
) -> ClassificationReport:
    """The chest X-ray SR content of ``facts.finding`` (preliminary for
    ``cxr-sr-preliminary``, which has no verifier)."""
    assert facts.instance is not None
    preliminary = object_name == CXR_SR_PRELIMINARY
    series_uid, sop_uid = result_uids(
        settings.key("deid"), facts.case.id, facts.finding.id, object_name
    )
    return ClassificationReport(
        source_images=[await _dataset(store, facts.instance, pixels=False)],
        readings=label_readings(facts.finding),
        algorithm=algorithm_of(facts.finding),
        verifier=None if preliminary else facts.verifier,
        note=None if preliminary else facts.case.sign_off_note,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        preliminary=preliminary,
    )


async def collect_ct_head(
    store: ObjectStore, settings: Settings, facts: CaseFacts
) -> ClassificationReport:
    """The head CT SR content of ``facts.finding``: its labels after review and, as source
    images, every slice the model read (from the finding's slice table, in slice order).

    NotFoundError ``instance_not_found`` when one of those slices was removed since.
    """
    table = SliceTable.from_json(await store.get(SliceArtefacts.of(facts.finding).slices))
    stored = {str(i.id): i for series in facts.case.study.series for i in series.instances}
    missing = [row.instance_id for row in table.slices if row.instance_id not in stored]
    if missing:
        raise NotFoundError(
            f"{len(missing)} slice(s) the model read were removed", code="instance_not_found"
        )
    series_uid, sop_uid = result_uids(
        settings.key("deid"), facts.case.id, facts.finding.id, CT_HEAD_SR
    )
    return ClassificationReport(
        source_images=[
            await _dataset(store, stored[row.instance_id], pixels=False) for row in table.slices
        ],
        readings=label_readings(facts.finding),
        algorithm=algorithm_of(facts.finding),
        verifier=facts.verifier,
        note=facts.case.sign_off_note,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
    )


def flair_series(case: Case, settings: Settings) -> Series:
    """The FLAIR series the brats pipeline segmented (the route's choice, as at inference)."""
    route = route_study(case.study, RoutingRules.from_settings(settings))
    series = route.channels.get("FLAIR")
    if series is None:
        raise InvalidInputError(
            "the study has no DICOM FLAIR series to reference", code="no_source_series"
        )
    return series


def _label_map(payload: bytes) -> npt.NDArray[np.uint8]:
    image = nifti_image(payload)
    return np.asarray(image.dataobj).astype(np.uint8)


async def collect_brats(store: ObjectStore, settings: Settings, facts: CaseFacts) -> BratsResult:
    """The brain MRI SEG + SR content of ``facts.finding``: the mask in force on the FLAIR
    series. InvalidInputError ``mask_grid_mismatch`` when the mask is not on that grid."""
    case, finding = facts.case, facts.finding
    if facts.verifier is None:
        raise InvalidInputError("the case is not signed off", code="case_not_signed_off")
    series = flair_series(case, settings)
    sources = [await _dataset(store, instance) for instance in series.instances]
    key, sha256, source = mask_in_force(finding)
    labels = await anyio.to_thread.run_sync(
        _label_map, await store.get(key, expected_sha256=sha256)
    )
    expected = (int(sources[0].Columns), int(sources[0].Rows), len(sources))
    if labels.shape != expected:
        raise InvalidInputError(
            f"the mask's grid {list(labels.shape)} is not the FLAIR series' {list(expected)}",
            code="mask_grid_mismatch",
        )
    deid_key = settings.key("deid")
    seg_series, seg_sop = result_uids(deid_key, case.id, finding.id, BRATS_SEG)
    sr_series, sr_sop = result_uids(deid_key, case.id, finding.id, BRATS_SR)
    return BratsResult(
        source_images=sources,
        labels=labels,
        region_ml=region_ml_in_force(finding),
        mask_source=source,
        algorithm=algorithm_of(finding),
        verifier=facts.verifier,
        note=case.sign_off_note,
        seg_series_uid=seg_series,
        seg_sop_uid=seg_sop,
        sr_series_uid=sr_series,
        sr_sop_uid=sr_sop,
    )
