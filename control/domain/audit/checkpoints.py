"""Signed checkpoints of the audit chain's head, kept in the object store, not the database.

A checkpoint says "at ``created_at`` the chain had ``entries`` entries, the last one
(``head_id``) hashing to ``head_hash``, keyed from ``keyed_from``", signed with the Ed25519
key derived from the secret key (like Certificate Transparency's signed tree heads, RFC 6962
§3.5). It lives under :data:`PREFIX` in the object store, which a database writer cannot
reach, so ``verify`` catches what the keyed chain alone cannot:

* truncation: fewer entries than the latest checkpoint counts (entries dropped from the end,
  ``audit_head.entries`` lowered to match);
* a rewritten chain: the entry at the checkpoint's position no longer has its head hash
  (e.g. entries re-chained as "legacy" after moving ``audit_head.keyed_from``);
* a moved ``keyed_from``.

The running server writes one at start-up, every ``MEDVISION_AUDIT_CHECKPOINT_S`` seconds
when the chain has grown, and at shutdown (control.app); ``medvision audit checkpoint``
writes one by hand. Entries appended after the latest checkpoint can still be dropped from
the end unnoticed: the window is that interval.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from cryptography.exceptions import InvalidSignature
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.models import AuditEntry, AuditHead
from control.domain.audit.chain import GENESIS_HASH, AuditKeys, VerifyReport, keys_for, verify
from control.storage.base import ObjectStore

#: Where checkpoints are stored: ``<PREFIX><entries, 12 digits>-<UTC time>.json``, so the
#: last key in sorted order is the latest checkpoint of the longest chain.
PREFIX = "audit/checkpoints/"
VERSION = 1
#: A checkpoint that cannot be written in this time (store down) is logged and skipped.
WRITE_TIMEOUT_S = 10.0

log = structlog.get_logger("medvision.audit")


class CheckpointError(Exception):
    """A stored checkpoint that cannot be trusted: unreadable, another key, bad signature."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain's head; ``key`` is where it is stored."""

    entries: int
    head_id: int
    head_hash: str
    keyed_from: int
    created_at: datetime
    key_id: str
    key: str = ""

    def payload(self) -> bytes:
        """The exact bytes that are signed: canonical JSON of every field but ``key``."""
        content = {
            "version": VERSION,
            "entries": self.entries,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "keyed_from": self.keyed_from,
            "created_at": self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": self.key_id,
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()

    def object_key(self) -> str:
        stamp = self.created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{PREFIX}{self.entries:012d}-{stamp}.json"


def sign(checkpoint: Checkpoint, keys: AuditKeys) -> bytes:
    """The stored form: the signed payload and its Ed25519 signature (base64)."""
    payload = checkpoint.payload()
    document = {
        "checkpoint": json.loads(payload),
        "signature": base64.b64encode(keys.signing_key.sign(payload)).decode(),
    }
    return json.dumps(document, sort_keys=True, indent=1).encode()


def parse(data: bytes, keys: AuditKeys, key: str = "") -> Checkpoint:
    """The checkpoint in ``data`` if its signature verifies with ``keys``; else CheckpointError."""
    try:
        document = json.loads(data)
        body = document["checkpoint"]
        checkpoint = Checkpoint(
            entries=int(body["entries"]),
            head_id=int(body["head_id"]),
            head_hash=str(body["head_hash"]),
            keyed_from=int(body["keyed_from"]),
            created_at=datetime.fromisoformat(body["created_at"]),
            key_id=str(body["key_id"]),
            key=key,
        )
        signature = base64.b64decode(document["signature"], validate=True)
        version = body["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {key} is unreadable: {exc}") from None
    if version != VERSION:
        raise CheckpointError(f"checkpoint {key} has unknown version {version!r}")
    if checkpoint.key_id != keys.key_id:
        raise CheckpointError(
            f"checkpoint {key} was signed by key {checkpoint.key_id}, not {keys.key_id}"
        )
    try:
        keys.public_key.verify(signature, checkpoint.payload())
    except InvalidSignature:
        raise CheckpointError(f"checkpoint {key} has an invalid signature") from None
    return checkpoint


async def write_checkpoint(
    session: AsyncSession, store: ObjectStore, keys: AuditKeys | None = None
) -> Checkpoint:
    """Sign the chain's current head and store it under :data:`PREFIX`.

    Counter, boundary and last entry are read in one statement, so they come from one
    snapshot (an append updates the counter and inserts its entry in one transaction).
    """
    keys = keys or keys_for(session)
    newest = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)
    row = (
        await session.execute(
            select(
                AuditHead.entries,
                AuditHead.keyed_from,
                newest.with_only_columns(AuditEntry.id).scalar_subquery(),
                newest.with_only_columns(AuditEntry.entry_hash).scalar_subquery(),
            ).where(AuditHead.id == 1)
        )
    ).one()
    await session.rollback()
    entries, keyed_from, head_id, head_hash = row
    checkpoint = Checkpoint(
        entries=entries,
        head_id=head_id or 0,
        head_hash=head_hash or GENESIS_HASH,
        keyed_from=keyed_from,
        created_at=datetime.now(UTC),
        key_id=keys.key_id,
    )
    checkpoint = replace(checkpoint, key=checkpoint.object_key())
    await store.put(checkpoint.key, sign(checkpoint, keys), content_type="application/json")
    return checkpoint


async def latest_checkpoint(store: ObjectStore, keys: AuditKeys) -> Checkpoint | None:
    """The latest stored checkpoint, signature checked; None when there is none yet.

    Raises CheckpointError when the latest one is not validly signed: a forged or damaged
    checkpoint is itself evidence of tampering (older checkpoints are implied by it).
    """
    stored = await store.list_keys(PREFIX)
    if not stored:
        return None
    key = stored[-1]
    return parse(await store.get(key), keys, key)


async def verify_with_checkpoint(
    session: AsyncSession, store: ObjectStore, keys: AuditKeys | None = None
) -> VerifyReport:
    """Verify the chain against the latest signed checkpoint in ``store``."""
    keys = keys or keys_for(session)
    try:
        checkpoint = await latest_checkpoint(store, keys)
    except CheckpointError as exc:
        report = await verify(session, keys=keys)
        if not report.ok:
            return report
        return replace(report, ok=False, reason=str(exc))
    return await verify(session, keys=keys, checkpoint=checkpoint)


class Checkpointer:
    """Writes checkpoints for the running server: at start-up, periodically, at shutdown."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        store: ObjectStore,
    ) -> None:
        self._keys = AuditKeys.from_settings(settings)
        self._interval = settings.audit_checkpoint_s
        self._session_factory = session_factory
        self._store = store
        self._lock = asyncio.Lock()
        self._last_entries: int | None = None

    async def checkpoint(self, reason: str, *, only_if_grown: bool = False) -> Checkpoint | None:
        """Write one checkpoint now; a failure is logged, never raised (the app keeps going)."""
        async with self._lock:
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S), self._session_factory() as session:
                    if only_if_grown:
                        entries = await session.scalar(
                            select(AuditHead.entries).where(AuditHead.id == 1)
                        )
                        await session.rollback()
                        if entries == self._last_entries:
                            return None
                    checkpoint = await write_checkpoint(session, self._store, self._keys)
            except Exception as exc:  # any store or database failure: logged, never fatal
                log.warning("audit_checkpoint_failed", reason=reason, error=type(exc).__name__)
                return None
            self._last_entries = checkpoint.entries
            log.info(
                "audit_checkpoint", reason=reason, entries=checkpoint.entries, key=checkpoint.key
            )
            return checkpoint

    async def run(self, stop: asyncio.Event) -> None:
        """Checkpoint the chain every interval while it grows, until ``stop`` is set (the
        start-up and shutdown checkpoints are the lifespan's, in line)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            except TimeoutError:
                await self.checkpoint("periodic", only_if_grown=True)
