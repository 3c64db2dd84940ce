"""results back to the PACS: re-identification records and the result export queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:30:00

``study_links.identity_encrypted`` and ``instance_links`` hold the encrypted
re-identification record (the original patient/study header subset and the original UIDs
behind each pseudonym); ``result_exports`` is the durable queue of SR/SEG objects to send to
the configured DICOM destinations (see control/results and docs/pacs-results.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC
from advanced_alchemy.types.guid import GUID
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _audit_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("study_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_encrypted", sa.LargeBinary(), nullable=True))

    op.create_table(
        "instance_links",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("instance_id", GUID(length=16), nullable=False),
        sa.Column("uids_encrypted", sa.LargeBinary(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_instance_links_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_links")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_instance_links_instance_id")),
    )

    op.create_table(
        "result_exports",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("case_id", GUID(length=16), nullable=False),
        sa.Column("finding_id", GUID(length=16), nullable=True),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                "skipped",
                name="export_status",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", DateTimeUTC(timezone=True), nullable=True),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_result_exports_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_result_exports_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_exports")),
        sa.UniqueConstraint("destination", "sop_instance_uid", name="uq_result_exports_dest_sop"),
    )
    with op.batch_alter_table("result_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_result_exports_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_result_exports_sop_instance_uid"), ["sop_instance_uid"], unique=False
        )
        batch_op.create_index("ix_result_exports_claim", ["status", "available_at"], unique=False)


def downgrade() -> None:
    op.drop_table("result_exports")
    op.drop_table("instance_links")
    with op.batch_alter_table("study_links", schema=None) as batch_op:
        batch_op.drop_column("identity_encrypted")
