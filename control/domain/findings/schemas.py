"""Request and response shapes for findings, decisions, sign-off and case history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from control.db.models import Decision, DecisionAction, Finding, FindingKind
from control.served.artefacts import CamArtefacts
from control.served.base import ViewerView
from control.served.registry import SERVED_MODELS


class DecisionOut(msgspec.Struct):
    id: uuid.UUID
    sequence: int
    action: DecisionAction
    username: str
    reason: str | None
    note: str | None
    labels: list[str] | None
    mask_sha256: str | None
    volumes_ml: dict[str, float] | None
    supersedes_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, decision: Decision) -> DecisionOut:
        return cls(
            id=decision.id,
            sequence=decision.sequence,
            action=decision.action,
            username=decision.username,
            reason=decision.reason,
            note=decision.note,
            labels=decision.labels,
            mask_sha256=decision.mask_sha256,
            volumes_ml=decision.volumes_ml,
            supersedes_id=decision.supersedes_id,
            created_at=decision.created_at,
        )


def viewer_views(finding: Finding) -> list[ViewerView]:
    """What the viewer API can render from the finding (its model's views)."""
    model = SERVED_MODELS.get(finding.model_name)
    return sorted(model.viewer) if model is not None else []


def cam_labels(finding: Finding) -> list[str]:
    """The labels whose heat maps the finding's CAM image holds, in their stored order."""
    if ViewerView.CAM not in viewer_views(finding) or "cams" not in finding.artifacts:
        return []
    return CamArtefacts.of(finding).labels


class ModelRef(msgspec.Struct):
    """What produced the finding, as Triton's model configuration said at inference time."""

    name: str
    network: str
    version: str
    training_run_id: str | None
    synthetic: bool


class FindingOut(msgspec.Struct):
    """An AI suggestion and the decisions on it (``current_decision`` is the one in force).

    ``views`` say what the viewer API renders from it: ``cam`` (``cam_labels`` name the
    heat maps of the overlay endpoint), ``segmentation`` (the volume endpoints) or
    ``slice_heatmap`` (per-slice results and heat maps of a series, the slice endpoints).
    """

    id: uuid.UUID
    kind: FindingKind
    subject: str
    instance_id: uuid.UUID | None
    model: ModelRef
    labels: list[str]
    probabilities: dict[str, float]
    thresholds: dict[str, float]
    volumes_ml: dict[str, float]
    cam_labels: list[str]
    views: list[ViewerView]
    input_sha256: str
    output_sha256: str
    latency_ms: float
    created_at: datetime
    decisions: list[DecisionOut]
    current_decision: DecisionOut | None

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        decisions = [DecisionOut.of(decision) for decision in finding.decisions]
        return cls(
            id=finding.id,
            kind=finding.kind,
            subject=finding.subject,
            instance_id=finding.instance_id,
            model=ModelRef(
                name=finding.model_name,
                network=finding.network_name,
                version=finding.model_version,
                training_run_id=finding.training_run_id,
                synthetic=finding.synthetic_model,
            ),
            labels=list(finding.labels),
            probabilities=dict(finding.probabilities),
            thresholds=dict(finding.thresholds),
            volumes_ml=dict(finding.volumes_ml),
            cam_labels=cam_labels(finding),
            views=viewer_views(finding),
            input_sha256=finding.input_sha256,
            output_sha256=finding.output_sha256,
            latency_ms=finding.latency_ms,
            created_at=finding.created_at,
            decisions=decisions,
            current_decision=decisions[-1] if decisions else None,
        )


Text = Annotated[str, msgspec.Meta(max_length=2000)]


class DecisionIn(msgspec.Struct, forbid_unknown_fields=True):
    """Accept, reject or edit a finding. ``reason`` is required for reject and edit; an edit of
    a classification gives the corrected ``labels``; ``supersedes`` is the id of the decision
    the client saw as current (omit or null for the first decision)."""

    action: DecisionAction
    reason: Text | None = None
    note: Text | None = None
    labels: list[Annotated[str, msgspec.Meta(max_length=64)]] | None = None
    supersedes: uuid.UUID | None = None
