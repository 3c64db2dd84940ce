"""inference jobs, findings, decisions and case sign-off

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:48:40.043417
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import advanced_alchemy.types


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_jobs",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("pipeline", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "running", "done", "failed", name="job_status", native_enum=False),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column(
            "available_at",
            advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "lease_expires_at",
            advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
            nullable=True,
        ),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "finished_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True
        ),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_inference_jobs_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inference_jobs")),
    )
    with op.batch_alter_table("inference_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inference_jobs_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_inference_jobs_claim", ["status", "available_at"], unique=False)

    op.create_table(
        "findings",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("job_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("instance_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column(
            "kind",
            sa.Enum("classification", "segmentation", name="finding_kind", native_enum=False),
            nullable=False,
        ),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("network_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("training_run_id", sa.String(length=64), nullable=True),
        sa.Column("synthetic_model", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("volumes_ml", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("output_sha256", sa.String(length=64), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_findings_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_findings_instance_id_instances"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["inference_jobs.id"],
            name=op.f("fk_findings_job_id_inference_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("job_id", "subject", name="uq_findings_job_subject"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_findings_case_id"), ["case_id"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("finding_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum("accept", "reject", "edit", name="decision_action", native_enum=False),
            nullable=False,
        ),
        sa.Column("user_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("mask_key", sa.String(length=512), nullable=True),
        sa.Column("mask_sha256", sa.String(length=64), nullable=True),
        sa.Column("volumes_ml", sa.JSON(), nullable=True),
        sa.Column("supersedes_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_decisions_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_decisions_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["decisions.id"],
            name=op.f("fk_decisions_supersedes_id_decisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_decisions_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("finding_id", "sequence", name="uq_decisions_finding_sequence"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_finding_id"), ["finding_id"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column(
                "signed_off_by_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "signed_off_at",
                advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("sign_off_note", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_cases_signed_off_by_id_users"),
            "users",
            ["signed_off_by_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_cases_signed_off_by_id_users"), type_="foreignkey")
        batch_op.drop_column("sign_off_note")
        batch_op.drop_column("signed_off_at")
        batch_op.drop_column("signed_off_by_id")
        batch_op.drop_column("pipeline")

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_finding_id"))
        batch_op.drop_index(batch_op.f("ix_decisions_case_id"))

    op.drop_table("decisions")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_findings_case_id"))

    op.drop_table("findings")
    with op.batch_alter_table("inference_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_inference_jobs_claim")
        batch_op.drop_index(batch_op.f("ix_inference_jobs_case_id"))

    op.drop_table("inference_jobs")
