"""Waking workers when a job is queued: PostgreSQL LISTEN/NOTIFY across processes.

Enqueueing sends ``NOTIFY medvision_jobs`` inside its transaction (delivered on commit);
every worker on PostgreSQL listens on its own connection and looks at the queue at once
instead of at its next poll. Polling stays as the fallback (a lost connection, SQLite).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings

CHANNEL = "medvision_jobs"
logger = logging.getLogger("medvision.worker")


async def announce_job(session: AsyncSession, settings: Settings) -> None:
    """Tell listening workers, when this transaction commits, that a job is due."""
    if settings.is_postgres:
        await session.execute(text(f"NOTIFY {CHANNEL}"))


def libpq_conninfo(settings: Settings) -> str:
    """The configured PostgreSQL URL as a libpq connection string (no SQLAlchemy driver)."""
    url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen_for_jobs(
    settings: Settings, wake: Callable[[], None], retry_s: float = 5.0
) -> None:
    """Call ``wake`` on every job notification until cancelled; reconnects after errors."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_conninfo(settings), autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                wake()  # anything queued while we were not listening
                async for _notify in connection.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: poll until it is back
            logger.warning("job notifications unavailable (%s); polling", exc)
            await asyncio.sleep(retry_s)
