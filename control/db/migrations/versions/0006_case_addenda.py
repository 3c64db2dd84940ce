"""case addenda: images that arrive after sign-off open an addendum case

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:00:00

A signed-off report is final, so new images of its study are read in a new case linked to
the signed one (``cases.addendum_of_id``) instead of joining it unread. A study therefore
has one original case (``uq_cases_original_per_study``, a partial unique index) and any
number of addenda, each the successor of exactly one case (``uq_cases_addendum_of_id``).
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types.guid import GUID
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ORIGINAL_ONLY = sa.text("addendum_of_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint("uq_cases_study_id", type_="unique")
        batch_op.add_column(sa.Column("addendum_of_id", GUID(length=16), nullable=True))
        batch_op.create_foreign_key(
            "fk_cases_addendum_of_id_cases",
            "cases",
            ["addendum_of_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint("uq_cases_addendum_of_id", ["addendum_of_id"])
        batch_op.create_index("ix_cases_study_id", ["study_id"], unique=False)
    op.create_index(
        "uq_cases_original_per_study",
        "cases",
        ["study_id"],
        unique=True,
        sqlite_where=ORIGINAL_ONLY,
        postgresql_where=ORIGINAL_ONLY,
    )


def downgrade() -> None:
    op.execute("DELETE FROM cases WHERE addendum_of_id IS NOT NULL")
    op.drop_index("uq_cases_original_per_study", table_name="cases")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_study_id")
        batch_op.drop_constraint("uq_cases_addendum_of_id", type_="unique")
        batch_op.drop_constraint("fk_cases_addendum_of_id_cases", type_="foreignkey")
        batch_op.drop_column("addendum_of_id")
        batch_op.create_unique_constraint("uq_cases_study_id", ["study_id"])
