"""auth hardening: case-insensitive usernames, token generations, refresh-token families

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 17:40:00

- ``users.token_generation``: every token carries the generation it was issued under; a
  password change, disable, re-enable or role change bumps it, which ends older tokens.
- ``refresh_tokens.family_id``: the refresh tokens rotated out of one login; existing tokens
  become families of one (their own jti), so a reuse can only revoke what it came from.
- ``uq_users_username_lower``: usernames unique without regard to case. Existing accounts
  whose names differ only in case are not renamed or merged here (which account a person
  logs in to is not the migration's to decide): the upgrade stops and names them, and an
  operator renames or removes all but one before running it again.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _refuse_case_duplicates() -> None:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(username) AS folded, count(*) AS n FROM users "
                "GROUP BY lower(username) HAVING count(*) > 1 ORDER BY folded"
            )
        )
        .all()
    )
    if rows:
        names = ", ".join(f"{row.folded} ({row.n} accounts)" for row in rows)
        raise RuntimeError(
            "usernames must be unique regardless of case, but these differ only in case: "
            f"{names}. Rename or delete all but one account of each name in the users "
            "table, then run the migration again."
        )


def upgrade() -> None:
    _refuse_case_duplicates()
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)

    with warnings.catch_warnings():
        # SQLite rebuilds refresh_tokens and reflects users for its foreign key; reflection
        # skips the expression index above (it stays, users is not rebuilt). A later batch
        # migration that rebuilds users on SQLite must create uq_users_username_lower again.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
            batch_op.add_column(sa.Column("family_id", sa.String(length=64), nullable=True))
        op.execute("UPDATE refresh_tokens SET family_id = jti")
        with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
            batch_op.alter_column("family_id", existing_type=sa.String(length=64), nullable=False)
            batch_op.create_index("ix_refresh_tokens_family_id", ["family_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_refresh_tokens_family_id")
        batch_op.drop_column("family_id")
    op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
