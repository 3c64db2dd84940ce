"""Request and response shapes for findings, decisions, sign-off and case history."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from control.db.models import AuditEntry, Decision, DecisionAction, Finding, FindingKind


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


def cam_labels(finding: Finding) -> list[str]:
    """The labels whose heat maps the finding's CAM image holds, in their stored order."""
    packed = finding.artifacts.get("cam_labels", "")
    return packed.split(",") if packed else []


class ModelRef(msgspec.Struct):
    """What produced the finding, as Triton's model configuration said at inference time."""

    name: str
    network: str
    version: str
    training_run_id: str | None
    synthetic: bool


class FindingOut(msgspec.Struct):
    """An AI suggestion and the decisions on it (``current_decision`` is the one in force).

    ``cam_labels`` name the heat maps available from the overlay endpoint; a segmentation's
    slices with its overlay come from the volume endpoints.
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
            input_sha256=finding.input_sha256,
            output_sha256=finding.output_sha256,
            latency_ms=finding.latency_ms,
            created_at=finding.created_at,
            decisions=decisions,
            current_decision=decisions[-1] if decisions else None,
        )


class HistoryEntry(msgspec.Struct):
    """One audit entry about the case or its study."""

    id: int
    occurred_at: datetime
    actor: str | None
    action: str
    outcome: str
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> HistoryEntry:
        return cls(
            id=entry.id,
            occurred_at=entry.occurred_at,
            actor=entry.actor,
            action=entry.action,
            outcome=entry.outcome,
            details=json.loads(entry.details),
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


class SignOffIn(msgspec.Struct, forbid_unknown_fields=True):
    """Sign the case off; ``version`` is the case version the client last saw."""

    version: int
    note: Text | None = None


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    version: int
