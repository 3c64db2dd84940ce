"""The keyed, hash-chained audit log: append entries and verify the chain.

Each entry carries ``entry_hash`` = HMAC-SHA256(audit key, canonical content + the previous
entry's hash). The key is derived from the secret key (``Settings.key("audit-hmac")``) and is
never stored in the database, so a database writer who edits, inserts or deletes entries
cannot compute hashes that fit: re-chaining with plain SHA-256, or with any other key, breaks
at the first entry touched. Entries written before the chain was keyed (ids below
``audit_head.keyed_from``, set by migration 0005) stay verifiable with plain SHA-256; the
first keyed entry links to the last of them, which seals that prefix.

What a database writer can still do alone — drop entries from the end and lower the
counter, or move ``keyed_from`` up and re-chain everything as "legacy" — is caught by the
signed checkpoints written outside the database (control.domain.audit.checkpoints), which
``verify`` checks when given one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings
from control.db.engine import settings_of
from control.db.models import AuditEntry, AuditHead
from control.observability.tracing import tracer

if TYPE_CHECKING:
    from control.domain.audit.checkpoints import Checkpoint

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did something: a user (name and role) or the system, and from where."""

    username: str | None = None
    role: str | None = None
    client_ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor(username="system", role="system")


@dataclass(frozen=True)
class AuditKeys:
    """The chain's HMAC key and the checkpoints' Ed25519 key, both derived from the secret key.

    Derived (HKDF, one label per purpose) rather than read from a separate key file: there is
    one secret to provision, protect and back up, and it already lives outside the database
    (``MEDVISION_SECRET_KEY`` or the data directory's ``secret_key`` file). The labels keep the
    keys independent of each other and of the JWT key. The public half of the signing key can
    be published (``medvision audit public-key``) so others can check checkpoints.
    """

    hmac_key: bytes = field(repr=False)
    signing_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKeys:
        return cls(
            hmac_key=settings.key("audit-hmac"),
            signing_key=Ed25519PrivateKey.from_private_bytes(settings.key("audit-signing")),
        )

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_key_hex(self) -> str:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    @property
    def key_id(self) -> str:
        """A short fingerprint of the public key, recorded in each checkpoint."""
        return hashlib.sha256(bytes.fromhex(self.public_key_hex)).hexdigest()[:16]


_KEYS: weakref.WeakKeyDictionary[Engine, AuditKeys] = weakref.WeakKeyDictionary()


def keys_for(session: AsyncSession) -> AuditKeys:
    """The audit keys of the settings the session's engine was created from."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    keys = _KEYS.get(engine)
    if keys is None:
        settings = settings_of(engine)
        if settings is None:
            raise RuntimeError(
                "the audit chain's keys come from the settings: create the engine with "
                "control.db.engine.create_engine(settings)"
            )
        keys = _KEYS[engine] = AuditKeys.from_settings(settings)
    return keys


def _canonical(entry: AuditEntry) -> bytes:
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
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_digest(entry: AuditEntry, key: bytes | None) -> str:
    """The hash that chains ``entry``: HMAC-SHA256 under ``key`` of its content and its
    predecessor's hash; plain SHA-256 when ``key`` is None (entries before ``keyed_from``)."""
    if key is None:
        return hashlib.sha256(_canonical(entry)).hexdigest()
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


#: ``Session.info`` key: the transaction that appended last and the hash of its last entry.
_TAIL = "medvision.audit_tail"


def _tail(session: AsyncSession) -> str | None:
    """The hash of the last entry appended in the session's current transaction, None if it
    appended none (or a savepoint is open, which could roll it back). That transaction holds
    the head's lock from its first append, so no other writer can have appended since."""
    sync = session.sync_session
    cached = sync.info.get(_TAIL)
    if cached is None or sync.in_nested_transaction():
        return None
    transaction, entry_hash = cached
    return entry_hash if transaction is sync.get_transaction() else None


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
    entry becomes durable when the caller commits, together with the change it records; it
    is inserted at the session's next flush (entries in the order they were appended), so
    its ``id`` is set only then.
    """
    # A span per audit write, so a trace shows where each entry was made (no details: PHI-free).
    with tracer().start_as_current_span("audit.append", attributes={"audit.action": action}):
        key = keys_for(session).hmac_key
        previous = _tail(session)
        await session.execute(
            update(AuditHead)
            .where(AuditHead.id == 1)
            .values(entries=AuditHead.entries + 1)
            # No head row is loaded as an object in a session that appends; and the entries
            # this transaction appended so far need no flush for it.
            .execution_options(synchronize_session=False, autoflush=False)
        )
        if previous is None:  # the first entry of this transaction: the chain's end is read
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
        entry.entry_hash = entry_digest(entry, key)
        session.add(entry)
        sync = session.sync_session
        if sync.in_nested_transaction():  # a savepoint rolled back would take the entry away
            sync.info.pop(_TAIL, None)
        else:
            sync.info[_TAIL] = (sync.get_transaction(), entry.entry_hash)
        return entry


@dataclass(frozen=True)
class VerifyReport:
    """The result of recomputing the chain: intact or the first entry that does not fit.

    ``checkpoint`` is the signed checkpoint the chain was checked against (None: none given).
    """

    ok: bool
    entries: int
    first_broken: int | None
    reason: str | None = None
    checkpoint: Checkpoint | None = None


async def verify(
    session: AsyncSession,
    batch_size: int = 1000,
    *,
    keys: AuditKeys | None = None,
    checkpoint: Checkpoint | None = None,
) -> VerifyReport:
    """Recompute every entry's hash in order; name the first entry whose hash or link is wrong.

    Entries removed from the end are caught by comparing with the append counter and, when
    ``checkpoint`` (an already signature-checked checkpoint) is given, with the entry count
    and head hash it signed: fewer entries than it counts is a truncation, another hash at
    its position is a rewritten chain. Its ``keyed_from`` is trusted over the database's.
    """
    hmac_key = (keys or keys_for(session)).hmac_key
    head = (
        await session.execute(
            select(AuditHead.entries, AuditHead.keyed_from).where(AuditHead.id == 1)
        )
    ).one_or_none()
    appended, stored_keyed_from = head if head is not None else (None, 1)
    keyed_from = checkpoint.keyed_from if checkpoint is not None else stored_keyed_from

    def broken(count: int, entry_id: int, reason: str) -> VerifyReport:
        return VerifyReport(False, count, entry_id, reason, checkpoint)

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
            break
        for entry in rows:
            count += 1
            if entry.prev_hash != expected_prev:
                return broken(count, entry.id, "link to the previous entry is broken")
            key = None if entry.id < keyed_from else hmac_key
            if not hmac.compare_digest(entry_digest(entry, key), entry.entry_hash):
                return broken(count, entry.id, "content does not match its hash")
            if (
                checkpoint is not None
                and count == checkpoint.entries
                and entry.entry_hash != checkpoint.head_hash
            ):
                return broken(
                    count,
                    entry.id,
                    f"the chain up to entry {entry.id} is not the one the checkpoint of "
                    f"{checkpoint.created_at.isoformat()} signed (rewritten and re-chained)",
                )
            expected_prev = entry.entry_hash
            last_id = entry.id
    if checkpoint is not None and count < checkpoint.entries:
        reason = (
            f"the checkpoint of {checkpoint.created_at.isoformat()} signed "
            f"{checkpoint.entries} entries but {count} remain"
        )
        return broken(count, last_id + 1, reason)
    if appended is not None and appended != count:
        return broken(count, last_id + 1, f"{appended} entries were appended but {count} remain")
    if stored_keyed_from != keyed_from:
        reason = (
            f"audit_head.keyed_from is {stored_keyed_from} but the signed checkpoint "
            f"says {keyed_from}"
        )
        return broken(count, min(stored_keyed_from, keyed_from), reason)
    return VerifyReport(ok=True, entries=count, first_broken=None, checkpoint=checkpoint)
