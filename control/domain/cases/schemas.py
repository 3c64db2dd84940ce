"""Request and response shapes for the worklist and case management."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import msgspec

from control.db.models import AuditEntry, Case, CaseStatus, Instance, Priority, Series, Study
from control.domain.findings.schemas import FindingOut, Text


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


class SignOffIn(msgspec.Struct, forbid_unknown_fields=True):
    """Sign the case off; ``version`` is the case version the client last saw."""

    version: int
    note: Text | None = None


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    version: int


class UserRef(msgspec.Struct):
    id: uuid.UUID
    username: str


class StudySummary(msgspec.Struct):
    id: uuid.UUID
    study_uid: str
    modality: str
    study_date: date | None
    age_band: str | None
    sex: str | None
    race_ethnicity: str | None
    series_count: int
    instance_count: int
    source_format: str

    @classmethod
    def of(cls, study: Study) -> StudySummary:
        return cls(
            id=study.id,
            study_uid=study.study_uid,
            modality=study.modality,
            study_date=study.study_date,
            age_band=study.age_band,
            sex=study.sex,
            race_ethnicity=study.race_ethnicity,
            series_count=len(study.series),
            instance_count=sum(len(series.instances) for series in study.series),
            source_format=study.source_format,
        )


class CaseOut(msgspec.Struct):
    id: uuid.UUID
    status: CaseStatus
    priority: Priority
    modality: str
    assignee: UserRef | None
    flags: list[str]
    status_reason: str | None
    pipeline: str | None
    signed_off_at: datetime | None
    sign_off_note: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    study: StudySummary
    #: The signed-off case this one is an addendum to (images that arrived after sign-off).
    addendum_of: uuid.UUID | None = None

    @classmethod
    def of(cls, case: Case) -> CaseOut:
        assignee = UserRef(case.assignee.id, case.assignee.username) if case.assignee else None
        return cls(
            id=case.id,
            status=case.status,
            priority=case.priority,
            modality=case.modality,
            assignee=assignee,
            flags=list(case.flags or []),
            status_reason=case.status_reason,
            pipeline=case.pipeline,
            signed_off_at=case.signed_off_at,
            sign_off_note=case.sign_off_note,
            version=case.version,
            created_at=case.created_at,
            updated_at=case.updated_at,
            study=StudySummary.of(case.study),
            addendum_of=case.addendum_of_id,
        )


class InstanceOut(msgspec.Struct):
    id: uuid.UUID
    sop_instance_uid: str
    sop_class_uid: str
    rows: int | None
    columns: int | None
    frames: int
    photometric_interpretation: str | None
    burned_in_annotation: bool
    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, instance: Instance) -> InstanceOut:
        return cls(
            id=instance.id,
            sop_instance_uid=instance.sop_instance_uid,
            sop_class_uid=instance.sop_class_uid,
            rows=instance.rows,
            columns=instance.columns,
            frames=instance.frames,
            photometric_interpretation=instance.photometric_interpretation,
            burned_in_annotation=instance.burned_in_annotation,
            sha256=instance.sha256,
            size_bytes=instance.size_bytes,
        )


class SeriesOut(msgspec.Struct):
    id: uuid.UUID
    series_uid: str
    modality: str
    body_part: str | None
    sequence_type: str | None
    instances: list[InstanceOut]

    @classmethod
    def of(cls, series: Series) -> SeriesOut:
        return cls(
            id=series.id,
            series_uid=series.series_uid,
            modality=series.modality,
            body_part=series.body_part,
            sequence_type=series.sequence_type,
            instances=[InstanceOut.of(instance) for instance in series.instances],
        )


class CaseDetail(CaseOut):
    """A case with its images, AI findings (with their decisions) and audited history."""

    series: list[SeriesOut] = msgspec.field(default_factory=list)
    findings: list[FindingOut] = msgspec.field(default_factory=list)
    history: list[HistoryEntry] = msgspec.field(default_factory=list)

    @classmethod
    def of_detail(
        cls, case: Case, findings: list[FindingOut], history: list[HistoryEntry]
    ) -> CaseDetail:
        base = CaseOut.of(case)
        fields = {name: getattr(base, name) for name in CaseOut.__struct_fields__}
        series = [SeriesOut.of(series) for series in case.study.series]
        return cls(**fields, series=series, findings=findings, history=history)


class CasePage(msgspec.Struct):
    items: list[CaseOut]
    total: int
    limit: int
    offset: int


class CaseUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Admin changes: assignee (null to return the case to the pool) and priority.

    ``version`` is the version the client last saw; a stale version answers 409.
    """

    version: int
    assignee_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | None = None
