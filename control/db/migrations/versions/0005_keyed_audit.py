"""keyed audit chain: audit_head.keyed_from marks where HMAC-SHA256 chaining begins

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04 17:30:00

Entries already in the log were chained with plain SHA-256 and stay verifiable as that:
``keyed_from`` is set to the id after the last existing entry, and every later entry is
chained with HMAC-SHA256 under a key derived from the secret key (never stored in the
database). A writer who moves ``keyed_from`` to pass off a re-chained log as "legacy" is
caught by the signed checkpoints, which record it (control/domain/audit/checkpoints.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keyed_from", sa.Integer(), nullable=False, server_default="1")
        )
    op.execute(
        "UPDATE audit_head SET keyed_from = (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log)"
    )


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("keyed_from")
