"""Database tables of the control plane (SQLAlchemy 2, advanced-alchemy bases)."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from advanced_alchemy.base import BigIntBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship


class Role(enum.StrEnum):
    """What a user account is for; guards decide access by role."""

    ADMIN = "admin"
    RADIOLOGIST = "radiologist"
    INTEGRATION = "integration"
    MLOPS = "mlops"


class CaseStatus(enum.StrEnum):
    """Where a case is in its life: from arrival to the radiologist's sign-off."""

    RECEIVED = "received"
    QUEUED = "queued"
    INFERRED = "inferred"
    IN_REVIEW = "in_review"
    SIGNED_OFF = "signed_off"
    FAILED = "failed"


class Priority(enum.StrEnum):
    """Reading priority, most urgent first when sorted by rank."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


class JobStatus(enum.StrEnum):
    """Where an inference job is: waiting (maybe for a retry), held by a worker, or ended."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class FindingKind(enum.StrEnum):
    """What an AI finding holds: a label set with heat maps, or a segmentation."""

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"


class DecisionAction(enum.StrEnum):
    """A radiologist's verdict on one AI finding."""

    ACCEPT = "accept"
    REJECT = "reject"
    EDIT = "edit"


PRIORITY_RANK = {Priority.STAT: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], native_enum=False)


class User(UUIDAuditBase):
    """A person or a service account. Integration accounts log in with client credentials.

    Usernames keep the case they were created with but are unique without regard to case
    (``uq_users_username_lower``): "Admin" and "admin" would otherwise be two accounts that
    look alike to people and share one login-throttle key.
    """

    __tablename__ = "users"
    __table_args__ = (Index("uq_users_username_lower", func.lower(text("username")), unique=True),)

    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    full_name: Mapped[str | None] = mapped_column(String(255), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped by a password change, disable, re-enable or role change; every token carries
    #: the value it was issued under, and one from an older generation is refused.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RefreshToken(UUIDAuditBase):
    """An issued refresh token (by its JWT id); rotated on use, revocable."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: Every refresh token rotated out of one login shares the login's family; presenting a
    #: rotated (already used) token revokes the whole family.
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class RevokedToken(UUIDAuditBase):
    """An access token revoked before its expiry (logout); kept until it would have expired."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class Study(UUIDAuditBase):
    """A de-identified imaging study. Only pseudonymous identifiers and coarse demographics."""

    __tablename__ = "studies"

    study_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    pseudo_patient_id: Mapped[str] = mapped_column(String(64), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="OT")
    study_date: Mapped[date | None] = mapped_column(Date, default=None)
    source_format: Mapped[str] = mapped_column(String(8), default="dicom")
    age_band: Mapped[str | None] = mapped_column(String(8), default=None)
    sex: Mapped[str | None] = mapped_column(String(1), default=None)
    race_ethnicity: Mapped[str | None] = mapped_column(String(64), default=None)
    burned_in_annotation: Mapped[bool] = mapped_column(Boolean, default=False)

    series: Mapped[list[Series]] = relationship(
        back_populates="study",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="Series.created_at",
    )


class StudyLink(UUIDAuditBase):
    """The encrypted original Study Instance UID, for sending results back to the PACS."""

    __tablename__ = "study_links"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), unique=True
    )
    #: Never loaded: declared so that a flush inserts a new study before its link.
    study: Mapped[Study] = relationship(lazy="raise")
    original_study_uid_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    #: The study's re-identification record (patient and study identity of the original
    #: header), Fernet-encrypted under the ``reid`` key; None for NIfTI studies and studies
    #: stored before records existed. See control.results.records.
    identity_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class InstanceLink(UUIDAuditBase):
    """An instance's original UIDs (pseudonym -> original), encrypted like the study's record."""

    __tablename__ = "instance_links"

    instance_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), unique=True
    )
    uids_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


class Series(UUIDAuditBase):
    """A series of a study: one modality, one acquisition (one MR sequence type)."""

    __tablename__ = "series"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    series_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    modality: Mapped[str] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64), default=None)
    sequence_type: Mapped[str | None] = mapped_column(String(16), default=None)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="Instance.created_at",
    )


class Instance(UUIDAuditBase):
    """One stored object (a DICOM instance or a NIfTI volume) with its integrity hash."""

    __tablename__ = "instances"

    series_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), index=True
    )
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer, default=None)
    columns: Mapped[int | None] = mapped_column(Integer, default=None)
    frames: Mapped[int] = mapped_column(Integer, default=1)
    photometric_interpretation: Mapped[str | None] = mapped_column(String(16), default=None)
    burned_in_annotation: Mapped[bool] = mapped_column(Boolean, default=False)

    series: Mapped[Series] = relationship(back_populates="instances")


class Case(UUIDAuditBase):
    """A study on the worklist: its status, priority and the radiologist who holds it."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_status_priority", "status", "priority_rank"),
        # A study has one original case; every later case is the addendum of exactly one
        # signed-off case (``addendum_of_id`` is unique), so racing uploads cannot open two.
        Index(
            "uq_cases_original_per_study",
            "study_id",
            unique=True,
            sqlite_where=text("addendum_of_id IS NULL"),
            postgresql_where=text("addendum_of_id IS NULL"),
        ),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    #: The signed-off case whose study received images after sign-off (this case reads them).
    addendum_of_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), unique=True, default=None
    )
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus, "case_status"), index=True)
    priority: Mapped[Priority] = mapped_column(
        _enum(Priority, "priority"), default=Priority.ROUTINE
    )
    priority_rank: Mapped[int] = mapped_column(Integer, default=PRIORITY_RANK[Priority.ROUTINE])
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    modality: Mapped[str] = mapped_column(String(16), index=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    pipeline: Mapped[str | None] = mapped_column(String(16), default=None)
    signed_off_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    signed_off_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    sign_off_note: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)

    study: Mapped[Study] = relationship(lazy="joined")
    assignee: Mapped[User | None] = relationship(lazy="joined", foreign_keys=[assignee_id])

    __mapper_args__ = {"version_id_col": version}


class InferenceJob(UUIDAuditBase):
    """One durable request to run a case through a Triton pipeline (at-least-once).

    A worker holds a running job through a lease it renews; a job whose lease expired (its
    worker died) is claimed again. ``available_at`` delays retries (exponential backoff).
    """

    __tablename__ = "inference_jobs"
    __table_args__ = (Index("ix_inference_jobs_claim", "status", "available_at"),)

    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    #: Never loaded: declared so that a flush inserts a new case before its job.
    case: Mapped[Case] = relationship(lazy="raise")
    pipeline: Mapped[str] = mapped_column(String(16))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    available_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    #: W3C traceparent of the span that queued the job; the worker's claim continues that
    #: trace (control.observability.tracing).
    trace_context: Mapped[str | None] = mapped_column(String(128), default=None)


class Finding(UUIDAuditBase):
    """One AI suggestion: what a model said about one image (or one MRI volume), with provenance.

    ``subject`` names what was analysed (an instance id, or ``volume``); a job writes at most
    one finding per subject, which makes re-running a job after a crash harmless.
    """

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("job_id", "subject", name="uq_findings_job_subject"),
        # The drift window: a model version's most recent findings (control.observability).
        Index("ix_findings_model_recent", "model_name", "model_version", "created_at"),
    )

    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inference_jobs.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("instances.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[FindingKind] = mapped_column(_enum(FindingKind, "finding_kind"))
    model_name: Mapped[str] = mapped_column(String(64))
    network_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(128))
    training_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    synthetic_model: Mapped[bool] = mapped_column(Boolean, default=False)
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    thresholds: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    volumes_ml: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    artifacts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    input_sha256: Mapped[str] = mapped_column(String(64))
    output_sha256: Mapped[str] = mapped_column(String(64))
    latency_ms: Mapped[float] = mapped_column(Float)
    #: Simple statistics of the input sent to Triton (intensity percentiles, size, spacing),
    #: compared with the model version's drift reference (control.observability.drift).
    input_stats: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)

    decisions: Mapped[list[Decision]] = relationship(
        lazy="selectin", order_by="Decision.sequence", cascade="all, delete-orphan"
    )


class Decision(UUIDAuditBase):
    """A radiologist's immutable verdict on a finding; a change is a new decision superseding it.

    ``sequence`` numbers the decisions of one finding (1, 2, ...): the unique constraint makes
    two concurrent decisions on the same finding collide, so exactly one of them is stored.
    """

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("finding_id", "sequence", name="uq_decisions_finding_sequence"),
    )

    finding_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), index=True
    )
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    sequence: Mapped[int] = mapped_column(Integer)
    action: Mapped[DecisionAction] = mapped_column(_enum(DecisionAction, "decision_action"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    username: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    labels: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    mask_key: Mapped[str | None] = mapped_column(String(512), default=None)
    mask_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    volumes_ml: Mapped[dict[str, float] | None] = mapped_column(JSON, default=None)
    supersedes_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("decisions.id", ondelete="SET NULL"), default=None
    )


class AuditEntry(BigIntBase):
    """One append-only, hash-chained record of a security-relevant event."""

    __tablename__ = "audit_log"

    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    actor_role: Mapped[str | None] = mapped_column(String(16), default=None)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32), default=None)
    target_id: Mapped[str | None] = mapped_column(String(64), default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(BigIntBase):
    """A single row that every audit append updates first, serialising writers on any database."""

    __tablename__ = "audit_head"

    entries: Mapped[int] = mapped_column(Integer, default=0)
    #: Entries with a smaller id were chained before the chain was keyed (plain SHA-256, see
    #: migration 0005); the signed checkpoints pin this value (control.domain.audit).
    keyed_from: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class ExportStatus(enum.StrEnum):
    """Where a result export is: waiting (maybe for a retry), being sent, or ended."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class ResultExport(UUIDAuditBase):
    """One result object (an SR or a SEG) to send to one configured destination.

    A durable job like :class:`InferenceJob` (lease, attempts, backoff). The object's UIDs
    are fixed when the export is queued, so every attempt sends the same SOP Instance UID
    and a PACS that already has it files no second copy.
    """

    __tablename__ = "result_exports"
    __table_args__ = (
        Index("ix_result_exports_claim", "status", "available_at"),
        UniqueConstraint("destination", "sop_instance_uid", name="uq_result_exports_dest_sop"),
    )

    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    #: The finding the object reports on.
    finding_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), default=None
    )
    destination: Mapped[str] = mapped_column(String(64))
    #: ``sr`` or ``seg``.
    kind: Mapped[str] = mapped_column(String(8))
    #: Which object of the finding: ``cxr-sr``, ``cxr-sr-preliminary``, ``brats-seg``, ...
    object_name: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[ExportStatus] = mapped_column(_enum(ExportStatus, "export_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    available_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
