"""Find and remove stored objects that no database row points to (crash leftovers).

An upload writes its objects before it commits its rows, and removes them again when the
transaction fails; a process killed in between (kill -9, OOM, power loss) leaves them
behind with nothing referencing them. :func:`reconcile` walks the prefixes whose objects
the database owns and deletes those no row references once they are older than a grace
period, so an upload still in flight (objects written, rows not yet committed) is never
touched. Audit checkpoints (``audit/``) have no rows by design and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.db.models import Decision, Finding, Instance
from control.storage.base import ObjectStore

__all__ = [
    "DEFAULT_GRACE_S",
    "OWNED_PREFIXES",
    "ReconcileReport",
    "reconcile",
    "reconcile_logged",
]

log = structlog.get_logger("medvision.storage")

#: Objects younger than this are never removed: an upload may still be committing them.
DEFAULT_GRACE_S = 3600
#: Prefixes whose every object must be referenced by a row (see ``referenced_keys``).
OWNED_PREFIXES = ("studies/", "derived/")


@dataclass
class ReconcileReport:
    """What one reconcile pass saw and did."""

    scanned: int = 0
    orphans: list[str] = field(default_factory=list)
    removed: int = 0
    too_young: int = 0


async def referenced_keys(session: AsyncSession) -> set[str]:
    """Every object key a row points to: instances, AI artefacts and edited masks."""
    keys = set(await session.scalars(select(Instance.object_key)))
    keys.update(key for key in await session.scalars(select(Decision.mask_key)) if key)
    for artifacts in await session.scalars(select(Finding.artifacts)):
        keys.update(value for value in (artifacts or {}).values() if isinstance(value, str))
    return keys


async def reconcile(
    session: AsyncSession,
    store: ObjectStore,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ReconcileReport:
    """Remove unreferenced objects under :data:`OWNED_PREFIXES` older than ``grace_s``.

    The store is listed before the rows are read, so an object whose row commits in
    between is seen as referenced. ``dry_run`` reports without deleting.
    """
    report = ReconcileReport()
    listed = [key for prefix in OWNED_PREFIXES for key in await store.list_keys(prefix)]
    referenced = await referenced_keys(session)
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    report.scanned = len(listed)
    for key in listed:
        if key in referenced:
            continue
        modified = await store.modified_at(key)
        if modified is None:
            continue  # removed meanwhile
        if modified > cutoff:
            report.too_young += 1
            continue
        report.orphans.append(key)
        if not dry_run:
            await store.delete(key)
            report.removed += 1
    return report


async def reconcile_logged(
    session_factory: async_sessionmaker[AsyncSession], store: ObjectStore
) -> ReconcileReport | None:
    """One pass as run at start-up: the counts are logged; a failure is logged, not raised
    (an unreachable store must not stop the server from starting)."""
    try:
        async with session_factory() as session:
            report = await reconcile(session, store)
    except Exception as exc:  # any store or database failure: report it and carry on
        log.warning("storage_reconcile_failed", error_type=type(exc).__name__)
        return None
    log.info(
        "storage_reconciled",
        scanned=report.scanned,
        removed=report.removed,
        too_young=report.too_young,
    )
    return report
