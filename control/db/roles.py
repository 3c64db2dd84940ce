"""PostgreSQL roles: the migration role owns the schema, the runtime role only uses it.

Two roles, so that the account the server runs as cannot undo the audit log's protections:

* the **migration role** (``medvision db upgrade``, run at deploy time with its own
  ``MEDVISION_DATABASE_URL``) creates and owns every table, including ``audit_log`` and its
  append-only trigger;
* the **runtime role** (``medvision serve``/``worker`` with ``MEDVISION_MIGRATE_ON_STARTUP=false``)
  owns nothing. On ``audit_log`` it gets SELECT and INSERT only: no UPDATE, DELETE or TRUNCATE,
  and — not being the owner — no ``ALTER TABLE ... DISABLE TRIGGER`` or ``DROP``. It may
  update ``audit_head`` (the append counter), which the signed checkpoints cross-check.

:func:`runtime_grants` is the SQL the migration role runs once after each upgrade
(``medvision audit runtime-grants ROLE | psql ...``). The roles themselves are created by the
database administrator; migrations do not create or grant, since the migration role may not
hold CREATEROLE and the runtime role's name is a deployment choice.
"""

from __future__ import annotations

import re

from control.db.models import AuditEntry

_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_APPEND_ONLY = {"audit_log"}


def runtime_grants(role: str) -> list[str]:
    """GRANT statements giving ``role`` what the server needs and no more."""
    if not _ROLE.fullmatch(role):
        raise ValueError(f"role must match {_ROLE.pattern}, got {role!r}")
    quoted = f'"{role}"'
    tables = sorted(table.name for table in AuditEntry.metadata.sorted_tables)
    statements = [f"GRANT USAGE ON SCHEMA public TO {quoted}"]
    for table in tables:
        privileges = "SELECT, INSERT" if table in _APPEND_ONLY else "SELECT, INSERT, UPDATE, DELETE"
        statements.append(f"GRANT {privileges} ON TABLE {table} TO {quoted}")
    statements += [
        f"GRANT SELECT ON TABLE alembic_version TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
    ]
    return statements
