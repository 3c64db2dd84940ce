"""The hash-chained audit log: append entries and verify the chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did something: a user (name and role) or the system, and from where."""

    username: str | None = None
    role: str | None = None
    client_ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor(username="system", role="system")


def entry_digest(entry: AuditEntry) -> str:
    """The SHA-256 that chains ``entry``: its content and its predecessor's hash."""
    content = {
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "outcome": entry.outcome,
        "client_ip": entry.client_ip,
        "request_id": entry.request_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append(
    session: AsyncSession,
    action: str,
    actor: Actor,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry to the chain inside the caller's transaction.

    Writers are serialised by updating the single ``audit_head`` row first (a row lock on
    PostgreSQL, the write lock on SQLite), so concurrent appends never fork the chain. The
    entry becomes durable when the caller commits, together with the change it records.
    """
    await session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(entries=AuditHead.entries + 1)
    )
    previous = await session.scalar(
        select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
    )
    entry = AuditEntry(
        occurred_at=datetime.now(UTC),
        actor=actor.username,
        actor_role=actor.role,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        client_ip=actor.client_ip,
        request_id=actor.request_id,
        details=json.dumps(details or {}, sort_keys=True, default=str),
        prev_hash=previous or GENESIS_HASH,
    )
    entry.entry_hash = entry_digest(entry)
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class VerifyReport:
    """The result of recomputing the chain: intact or the first entry that does not fit."""

    ok: bool
    entries: int
    first_broken: int | None
    reason: str | None = None


async def verify(session: AsyncSession, batch_size: int = 1000) -> VerifyReport:
    """Recompute every entry's hash in order; name the first entry whose hash or link is wrong.

    Entries removed from the end are caught by comparing with the append counter.
    """
    expected_prev = GENESIS_HASH
    count = 0
    last_id = 0
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.id > last_id)
                .order_by(AuditEntry.id)
                .limit(batch_size)
                .execution_options(populate_existing=True)
            )
        ).all()
        if not rows:
            appended = await session.scalar(select(AuditHead.entries).where(AuditHead.id == 1))
            if appended is not None and appended != count:
                reason = f"{appended} entries were appended but {count} remain"
                return VerifyReport(False, count, last_id + 1, reason)
            return VerifyReport(ok=True, entries=count, first_broken=None)
        for entry in rows:
            count += 1
            if entry.prev_hash != expected_prev:
                return VerifyReport(False, count, entry.id, "link to the previous entry is broken")
            if entry_digest(entry) != entry.entry_hash:
                return VerifyReport(False, count, entry.id, "content does not match its hash")
            expected_prev = entry.entry_hash
            last_id = entry.id
