"""Radiologist review: decisions on AI findings and mask edits, all audited.

AI output is a suggestion. Only the radiologist who holds a case decides on its findings;
decisions are never changed or deleted: a later change is a new decision that supersedes
the current one, and two concurrent decisions on one finding cannot both be stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio.to_thread
import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import (
    Case,
    CaseStatus,
    Decision,
    DecisionAction,
    Finding,
    FindingKind,
)
from control.dicom.nifti import read_nifti
from control.dicom.reader import UploadLimits
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import (
    clean_text,
    concurrent_change_conflicts,
    require_holder,
)
from control.domain.studies.prepare import HEAVY_WORK_SLOTS
from control.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnsupportedMediaError,
)
from control.imaging.volumes import nifti_bytes, nifti_image
from control.served.artefacts import SegmentationArtefacts
from control.served.brats import REGIONS
from control.storage import ObjectStore
from medvision_contract.labels import BRATS_REGIONS
from medvision_contract.regions import region_volumes_ml


@dataclass(frozen=True)
class DecisionRequest:
    """What a radiologist decided on one finding.

    ``supersedes`` is the id of the decision the client saw as current (None for the first
    decision): a mismatch means someone decided in between, and the request is refused.
    """

    action: DecisionAction
    reason: str | None = None
    note: str | None = None
    labels: list[str] | None = None
    supersedes: uuid.UUID | None = None


@dataclass(frozen=True)
class EditedMask:
    """A replacement segmentation, already validated and stored."""

    key: str
    sha256: str
    volumes_ml: dict[str, float]


async def case_findings(session: AsyncSession, case_id: uuid.UUID) -> list[Finding]:
    """The case's findings (decisions loaded), oldest first."""
    result = await session.scalars(
        select(Finding)
        .where(Finding.case_id == case_id)
        .order_by(Finding.created_at, Finding.subject)
        .execution_options(populate_existing=True)
    )
    return list(result.all())


def current_decision(finding: Finding) -> Decision | None:
    """The decision in force: the latest of the finding's chain, or None."""
    return finding.decisions[-1] if finding.decisions else None


def _validate(finding: Finding, request: DecisionRequest, mask: EditedMask | None) -> None:
    reason = clean_text(request.reason, "reason")
    if request.action in (DecisionAction.REJECT, DecisionAction.EDIT) and not reason:
        raise InvalidInputError(f"a {request.action.value} needs a reason", code="reason_required")
    if request.action != DecisionAction.EDIT:
        if request.labels is not None or mask is not None:
            raise InvalidInputError(
                "labels and masks belong to an edit", code="edit_fields_without_edit"
            )
        return
    if finding.kind == FindingKind.CLASSIFICATION:
        if request.labels is None:
            raise InvalidInputError(
                "an edit of a classification needs labels", code="labels_required"
            )
        known = set(finding.probabilities)
        unknown = sorted(set(request.labels) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown labels: {', '.join(unknown)}",
                code="invalid_labels",
                detail={"unknown": unknown, "known": sorted(known)},
            )
    elif mask is None:
        raise InvalidInputError(
            "an edit of a segmentation replaces its mask: upload it to the mask endpoint",
            code="mask_required",
        )


async def get_finding(session: AsyncSession, case: Case, finding_id: uuid.UUID) -> Finding:
    """The case's finding ``finding_id``; NotFoundError otherwise."""
    finding = await session.scalar(
        select(Finding)
        .where(Finding.id == finding_id, Finding.case_id == case.id)
        .execution_options(populate_existing=True)
    )
    if finding is None:
        raise NotFoundError(
            f"finding {finding_id} not found in this case", code="finding_not_found"
        )
    return finding


async def decide(
    session: AsyncSession,
    case: Case,
    finding: Finding,
    user: AuthUser,
    actor: Actor,
    request: DecisionRequest,
    mask: EditedMask | None = None,
) -> Decision:
    """Record the holder's decision on ``finding``; commits with its audit entry.

    403 ``not_case_holder``; 409 ``case_signed_off``, ``stale_decision`` (``supersedes`` is
    not the current decision) or ``decision_conflict`` (a concurrent decision won).
    """
    require_holder(case, user)
    _validate(finding, request, mask)
    head = current_decision(finding)
    head_id = head.id if head else None
    if request.supersedes != head_id:
        raise ConflictError(
            "another decision was recorded on this finding; reload and try again",
            code="stale_decision",
            detail={"current_decision_id": str(head_id) if head_id else None},
        )
    decision = Decision(
        id=uuid.uuid4(),
        finding_id=finding.id,
        case_id=case.id,
        sequence=(head.sequence + 1) if head else 1,
        action=request.action,
        user_id=user.id,
        username=user.username,
        reason=clean_text(request.reason, "reason"),
        note=clean_text(request.note, "note"),
        labels=sorted(set(request.labels)) if request.labels is not None else None,
        mask_key=mask.key if mask else None,
        mask_sha256=mask.sha256 if mask else None,
        volumes_ml=mask.volumes_ml if mask else None,
        supersedes_id=head_id,
    )
    session.add(decision)
    if case.status in (CaseStatus.INFERRED, CaseStatus.QUEUED):
        case.status = CaseStatus.IN_REVIEW
    case.updated_at = datetime.now(UTC)  # a new version: cached views of the case go stale
    async with concurrent_change_conflicts(session):
        await chain.append(
            session,
            "decision.recorded",
            actor,
            target_type="case",
            target_id=str(case.id),
            details={
                "finding_id": str(finding.id),
                "decision_id": str(decision.id),
                "sequence": decision.sequence,
                "action": decision.action.value,
                "reason": decision.reason,
                "labels": decision.labels,
                "ai_labels": finding.labels,
                "mask_sha256": decision.mask_sha256,
                "supersedes": str(head_id) if head_id else None,
            },
        )
        await session.commit()
    return decision


def _mask_volumes(
    payload: bytes, reference: bytes, filename: str, limits: UploadLimits
) -> tuple[bytes, dict[str, float]]:
    """Validate an uploaded label map against the grid of the AI segmentation ``reference``
    (its stored gzip NIfTI); canonical bytes and region volumes.

    The upload is decompressed no further than its header's declared size allows (a
    ``volume_too_large`` 413 above ``limits``, counted in bytes of its data type), so a gzip
    bomb is refused, not inflated. It shares the upload's
    :data:`~control.domain.studies.prepare.HEAVY_WORK_SLOTS`.
    """
    with HEAVY_WORK_SLOTS:
        return _validated_mask(payload, reference, filename, limits)


def _validated_mask(
    payload: bytes, reference: bytes, filename: str, limits: UploadLimits
) -> tuple[bytes, dict[str, float]]:
    try:
        image = read_nifti(payload, filename, limits)  # PayloadTooLargeError passes as is
    except (InvalidInputError, UnsupportedMediaError) as exc:
        raise InvalidInputError(
            f"not a readable NIfTI label map: {exc.message}",
            code="invalid_mask",
            detail={"reason": exc.code},
        ) from None
    try:
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel reports unreadable voxel data with many types
        raise InvalidInputError(
            f"{filename}: not a readable NIfTI label map ({exc})", code="invalid_mask"
        ) from None
    ai_image = nifti_image(reference)
    reference_shape, affine = tuple(ai_image.shape), ai_image.affine
    if data.shape != reference_shape:
        raise InvalidInputError(
            f"{filename}: mask shape {list(data.shape)} differs from the segmentation's "
            f"{list(reference_shape)}",
            code="mask_shape_mismatch",
            detail={"expected": list(reference_shape), "got": list(data.shape)},
        )
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.rint(data)):
        raise InvalidInputError(f"{filename}: labels must be integers", code="invalid_mask")
    values = set(np.unique(data).astype(int).tolist())
    if not values <= {0, 1, 2, 3}:
        raise InvalidInputError(
            f"{filename}: labels must be 0-3 (found {sorted(values)})", code="invalid_mask"
        )
    labels = data.astype(np.uint8)
    # The same computation as the AI's REGION_ML (brats_postprocess), so they compare.
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    by_region = region_volumes_ml(labels, spacing.tolist())
    volumes = {
        name: round(by_region[region], 3)
        for name, region in zip(REGIONS, BRATS_REGIONS, strict=True)
    }
    return nifti_bytes(labels, affine, compresslevel=6), volumes


async def store_mask(
    store: ObjectStore,
    case: Case,
    finding: Finding,
    user: AuthUser,
    upload: tuple[bytes, str],
    limits: UploadLimits,
) -> EditedMask:
    """Validate an uploaded replacement mask and store it under a new key.

    The caller deletes the object again if the decision that references it is refused.
    """
    require_holder(case, user)
    if finding.kind != FindingKind.SEGMENTATION:
        raise InvalidInputError("only segmentations take a mask", code="not_a_segmentation")
    reference = await store.get(SegmentationArtefacts.of(finding).segmentation)
    payload, filename = upload
    canonical, volumes = await anyio.to_thread.run_sync(
        _mask_volumes, payload, reference, filename, limits
    )
    key = f"derived/cases/{case.id}/masks/{uuid.uuid4()}.nii.gz"
    stored = await store.put(key, canonical, content_type="application/gzip")
    return EditedMask(key=key, sha256=stored.sha256, volumes_ml=volumes)
