"""observability: trace context on jobs, input statistics on findings, the drift window index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:00:00

``inference_jobs.trace_context`` keeps the W3C traceparent of the span that queued a job,
so the worker that claims it continues the upload's trace. ``findings.input_stats`` keeps
the simple input statistics (intensity percentiles, size, spacing) the drift monitor
compares with the model version's reference; ``ix_findings_model_recent`` serves its
"most recent findings of this model version" window. See docs/monitoring.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inference_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=128), nullable=True))
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("input_stats", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.create_index(
            "ix_findings_model_recent",
            ["model_name", "model_version", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_model_recent")
        batch_op.drop_column("input_stats")
    with op.batch_alter_table("inference_jobs", schema=None) as batch_op:
        batch_op.drop_column("trace_context")
