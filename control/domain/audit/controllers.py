"""Audit endpoints: verify the chain, page through entries (admins)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import AuditEntry, Role
from control.domain.audit import checkpoints
from control.domain.auth.guards import requires


class CheckpointOut(msgspec.Struct):
    """The signed checkpoint (object store) the chain was checked against."""

    entries: int
    head_id: int
    head_hash: str
    created_at: datetime
    key: str


class VerifyOut(msgspec.Struct):
    ok: bool
    entries: int
    first_broken: int | None
    reason: str | None
    #: None when no checkpoint has been written yet (or the latest one is not valid: see
    #: ``reason``).
    checkpoint: CheckpointOut | None = None


class AuditEntryOut(msgspec.Struct):
    id: int
    occurred_at: datetime
    actor: str | None
    actor_role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]
    guards = [requires(Role.ADMIN)]

    @get("/verify", operation_id="verifyAuditChain")
    async def verify(self, db_session: AsyncSession, state: State) -> VerifyOut:
        """Recompute the keyed hash chain and check it against the latest signed checkpoint;
        ``first_broken`` names the first entry that does not fit."""
        report = await checkpoints.verify_with_checkpoint(db_session, state.store)
        signed = report.checkpoint
        return VerifyOut(
            report.ok,
            report.entries,
            report.first_broken,
            report.reason,
            checkpoint=CheckpointOut(
                signed.entries, signed.head_id, signed.head_hash, signed.created_at, signed.key
            )
            if signed is not None
            else None,
        )

    @get("/", operation_id="listAuditEntries")
    async def list_entries(
        self,
        db_session: AsyncSession,
        action: Annotated[
            str | None, Parameter(max_length=64, description="only entries of this action")
        ] = None,
        actor: Annotated[
            str | None,
            Parameter(max_length=64, description="only entries by this actor (username, exact)"),
        ] = None,
        target_id: Annotated[
            str | None,
            Parameter(max_length=64, description="only entries about this target (e.g. a case id)"),
        ] = None,
        after_id: Annotated[
            int,
            Parameter(
                ge=0, le=2**63 - 1, description="the last id of the previous page (a cursor)"
            ),
        ] = 0,
        limit: Annotated[int, Parameter(ge=1, le=500, description="at most this many")] = 100,
    ) -> list[AuditEntryOut]:
        """Entries in chain order after ``after_id``, optionally of one action, actor or target;
        the filters combine (all must match)."""
        query = select(AuditEntry).where(AuditEntry.id > after_id)
        if action:
            query = query.where(AuditEntry.action == action)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        if target_id:
            query = query.where(AuditEntry.target_id == target_id)
        rows = await db_session.scalars(query.order_by(AuditEntry.id).limit(limit))
        return [
            AuditEntryOut(
                id=row.id,
                occurred_at=row.occurred_at,
                actor=row.actor,
                actor_role=row.actor_role,
                action=row.action,
                target_type=row.target_type,
                target_id=row.target_id,
                outcome=row.outcome,
                client_ip=row.client_ip,
                request_id=row.request_id,
                details=json.loads(row.details),
                prev_hash=row.prev_hash,
                entry_hash=row.entry_hash,
            )
            for row in rows
        ]
