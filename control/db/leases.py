"""The compare-and-set claim shared by the database-backed queues (inference jobs, result
exports): a row is taken only if nobody changed its status or attempt count since it was
read, so two workers racing for it cannot both win (SQLite's single writer included)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession


async def take_lease(
    session: AsyncSession,
    row: Any,
    running_status: Any,
    worker_id: str,
    lease_s: float,
    now: datetime,
) -> bool:
    """Mark ``row`` (a mapped queue row with ``status``, ``attempts``, ``lease_owner`` and
    ``lease_expires_at``) as running under ``worker_id`` with one more attempt; False (and
    the session rolled back) when another worker changed it first."""
    model = type(row)
    taken = await session.execute(
        update(model)
        .where(model.id == row.id, model.status == row.status, model.attempts == row.attempts)
        .values(
            status=running_status,
            attempts=row.attempts + 1,
            lease_owner=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return False
    return True
