"""The keyed audit chain and its signed checkpoints against a database writer.

The attacker here can run any SQL (on PostgreSQL as the table owner, so the append-only
trigger is no obstacle) but holds neither the secret key nor write access to the object
store. Every rewrite they can compute — plain SHA-256, a key of their own, moving
``keyed_from`` to pass the chain off as pre-keying "legacy", dropping the tail and lowering
the counter — must be caught, and so must a checkpoint they forge.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text, update

from control.app import create_app
from control.db.engine import create_engine, create_session_factory
from control.db.models import AuditEntry, AuditHead
from control.db.roles import runtime_grants
from control.domain.audit import chain, checkpoints
from control.domain.audit.chain import Actor, AuditKeys


async def _append_many(app, count):
    for index in range(count):
        async with app.state.session_factory() as session:
            await chain.append(
                session, "test.event", Actor("tester", "admin"), details={"i": index}
            )
            await session.commit()


async def _startup_checkpoint(app):
    """Wait for the checkpoint the server writes at start-up, so later ones sort after it."""
    for _ in range(200):
        if await app.state.store.list_keys(checkpoints.PREFIX):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no start-up checkpoint")


async def _checkpoint(app):
    await _startup_checkpoint(app)
    async with app.state.session_factory() as session:
        return await checkpoints.write_checkpoint(session, app.state.store)


async def _verify_plain(app):
    """The chain alone (database only), as before checkpoints existed."""
    async with app.state.session_factory() as session:
        return await chain.verify(session)


async def _verify_signed(app):
    async with app.state.session_factory() as session:
        return await checkpoints.verify_with_checkpoint(session, app.state.store)


def _legacy_digest(entry):
    return chain.entry_digest(entry, None)


def _wrong_key_digest(entry):
    content = chain._canonical(entry)
    return hmac.new(b"attacker-key-" + b"k" * 32, content, hashlib.sha256).hexdigest()


async def _rewrite(app, *, edit_id, digest, keyed_from=None, drop_last=0):
    """What a database writer can do: edit entry ``edit_id`` and re-chain every entry with
    ``digest``; optionally move ``keyed_from``, drop entries from the end and lower the
    append counter to match."""
    async with app.state.session_factory() as session:
        postgres = session.bind.dialect.name == "postgresql"
        if postgres:
            await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        if drop_last:
            for entry in entries[-drop_last:]:
                await session.delete(entry)
            entries = entries[:-drop_last]
            await session.execute(update(AuditHead).values(entries=AuditHead.entries - drop_last))
        if edit_id is not None:
            previous = chain.GENESIS_HASH
            for entry in entries:
                if entry.id == edit_id:
                    entry.details = json.dumps({"i": "rewritten"})
                entry.prev_hash = previous
                entry.entry_hash = "pending-" + secrets.token_hex(8)  # unique while re-chaining
                await session.flush()
                entry.entry_hash = digest(entry)
                await session.flush()
                previous = entry.entry_hash
        if keyed_from is not None:
            await session.execute(update(AuditHead).values(keyed_from=keyed_from))
        await session.flush()
        if postgres:
            await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        await session.commit()


async def test_untouched_chain_verifies_against_the_latest_checkpoint(app, client, accounts):
    await _append_many(app, 4)
    written = await _checkpoint(app)
    await _append_many(app, 2)  # after the checkpoint: still fine
    report = await _verify_signed(app)
    assert report.ok, report
    assert report.checkpoint is not None
    assert report.checkpoint.entries == written.entries == report.entries - 2
    response = await client.get("/api/audit/verify", headers=accounts["admin1"].headers)
    body = response.json()
    assert body["ok"] is True
    assert body["checkpoint"]["entries"] == written.entries
    assert body["checkpoint"]["key"] == written.key


async def test_entries_are_hmac_keyed_not_plain_sha256(app, client):
    await _append_many(app, 1)
    async with app.state.session_factory() as session:
        entry = await session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()))
        keys = AuditKeys.from_settings(app.state.settings)
        assert entry.entry_hash == chain.entry_digest(entry, keys.hmac_key)
        assert entry.entry_hash != _legacy_digest(entry)


@pytest.mark.parametrize("digest", [_legacy_digest, _wrong_key_digest], ids=["sha256", "wrongkey"])
async def test_rewritten_and_rechained_entry_is_caught(app, client, digest):
    await _append_many(app, 6)
    await _rewrite(app, edit_id=4, digest=digest)
    for report in (await _verify_plain(app), await _verify_signed(app)):
        assert not report.ok
        assert report.first_broken == 1  # the first entry whose hash is not the keyed one
        assert "hash" in report.reason


async def test_passing_the_chain_off_as_legacy_is_caught_by_the_checkpoint(app, client):
    await _append_many(app, 6)
    await _checkpoint(app)
    await _rewrite(app, edit_id=3, digest=_legacy_digest, keyed_from=10_000)
    # The database alone now says "all legacy, all fine": that is what the checkpoint is for.
    assert (await _verify_plain(app)).ok
    report = await _verify_signed(app)
    assert not report.ok
    assert report.first_broken == 1
    assert "hash" in report.reason


async def test_dropped_tail_with_lowered_counter_is_caught_by_the_checkpoint(app, client):
    await _append_many(app, 6)
    written = await _checkpoint(app)
    await _rewrite(app, edit_id=None, digest=_legacy_digest, drop_last=2)
    assert (await _verify_plain(app)).ok  # counter and chain agree: only the checkpoint knows
    report = await _verify_signed(app)
    assert not report.ok
    assert report.entries == written.entries - 2
    assert report.first_broken == written.head_id - 1
    assert f"signed {written.entries} entries but {written.entries - 2} remain" in report.reason


async def test_moved_keyed_from_alone_is_caught_by_the_checkpoint(app, client):
    await _append_many(app, 3)
    await _checkpoint(app)
    await _rewrite(app, edit_id=None, digest=_legacy_digest, keyed_from=2)
    report = await _verify_signed(app)
    assert not report.ok
    assert "keyed_from" in report.reason


async def test_forged_checkpoints_are_caught(app, client):
    await _append_many(app, 3)
    genuine = await _checkpoint(app)
    store = app.state.store
    keys = AuditKeys.from_settings(app.state.settings)
    later = datetime(2100, 1, 1, tzinfo=UTC)

    # 1. a checkpoint of the attacker's re-chained head, signed with their own Ed25519 key
    #    and claiming our key id
    forged = replace(genuine, head_hash="a" * 64, created_at=later)
    attacker = replace(keys, signing_key=Ed25519PrivateKey.generate())
    await store.put(forged.object_key(), checkpoints.sign(forged, attacker))
    report = await _verify_signed(app)
    assert not report.ok
    assert "invalid signature" in report.reason
    await store.delete(forged.object_key())
    assert (await _verify_signed(app)).ok

    # 2. a genuine checkpoint whose signed content was edited (fewer entries)
    document = json.loads(await store.get(genuine.key))
    document["checkpoint"]["entries"] += 5
    edited = replace(genuine, entries=genuine.entries + 5)
    await store.put(edited.object_key(), json.dumps(document).encode())
    report = await _verify_signed(app)
    assert not report.ok
    assert "invalid signature" in report.reason
    await store.delete(edited.object_key())

    # 3. garbage under the prefix
    await store.put(checkpoints.PREFIX + "999999999999-x.json", b"not json")
    assert "unreadable" in (await _verify_signed(app)).reason


async def test_the_server_checkpoints_periodically_and_at_shutdown(settings):
    app = create_app(settings.model_copy(update={"audit_checkpoint_s": 0.05}))
    store = app.state.store
    # The test client serves the app on its own event loop: append through another engine,
    # as another process would.
    engine = create_engine(settings)
    writer = SimpleNamespace(state=SimpleNamespace(session_factory=create_session_factory(engine)))
    try:
        async with AsyncTestClient(app=app):
            await _startup_checkpoint(app)
            await _append_many(writer, 2)
            for _ in range(200):
                stored = await store.list_keys(checkpoints.PREFIX)
                if stored[-1].startswith(checkpoints.PREFIX + "000000000002-"):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"no periodic checkpoint: {stored}")
        # Once a day: only the start-up (2 entries) and shutdown checkpoints are written.
        async with AsyncTestClient(app=create_app(settings)):
            await _append_many(writer, 1)
    finally:
        await engine.dispose()
    stored = await store.list_keys(checkpoints.PREFIX)
    last = checkpoints.parse(await store.get(stored[-1]), AuditKeys.from_settings(settings))
    assert last.entries == 3  # the shutdown checkpoint


def test_cli_checkpoint_then_truncation_is_caught(tmp_path):
    env = {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path),
        "MEDVISION_PASSWORD": "a-long-enough-password",
        "MEDVISION_SECRET_KEY": "s" * 40,
    }
    cli = [sys.executable, "-m", "control.cli.main"]

    def run(*args):
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, check=False)

    for name in ("admin", "second", "third"):
        assert run("users", "create", "--role", "admin", "--username", name).returncode == 0
    written = run("audit", "checkpoint")
    assert written.returncode == 0, written.stderr
    assert "checkpoint of 3 entries" in written.stdout
    intact = run("audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert json.loads(intact.stdout.splitlines()[0])["checkpoint"]["entries"] == 3
    with sqlite3.connect(tmp_path / "medvision.db") as connection:
        connection.execute("DELETE FROM audit_log WHERE id = 3")
        connection.execute("UPDATE audit_head SET entries = 2")
    broken = run("audit", "verify")
    assert broken.returncode == 1
    report = json.loads(broken.stdout.splitlines()[0])
    assert report["first_broken"] == 3
    assert "signed 3 entries but 2 remain" in report["reason"]
    public = run("audit", "public-key")
    assert public.returncode == 0
    raw = bytes.fromhex(public.stdout.split()[0])
    assert len(raw) == 32
    assert base64.b64encode(raw)  # a plain 32-byte Ed25519 public key


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_runtime_role_cannot_rewrite_the_audit_log(app, client, database_url):
    """The migration role owns the tables; the runtime role gets runtime_grants() only."""
    await _append_many(app, 2)
    role = f"mv_runtime_{secrets.token_hex(4)}"
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{role}" NOLOGIN')  # type: ignore[arg-type]
        try:
            for statement in runtime_grants(role):
                connection.execute(statement)  # type: ignore[arg-type]
            connection.execute(f'SET ROLE "{role}"')  # type: ignore[arg-type]
            assert connection.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2
            connection.execute("UPDATE audit_head SET entries = entries")  # the counter: yes
            connection.execute(  # appending: yes (the id sequence included)
                "INSERT INTO audit_log (occurred_at, action, outcome, details, prev_hash, "
                "entry_hash) VALUES (now(), 'probe', 'success', '{}', 'p', 'h')"
            )
            for statement in (
                "UPDATE audit_log SET actor = 'mallory'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER USER",
                "DROP TABLE audit_log",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    connection.execute(statement)  # type: ignore[arg-type]
            connection.execute("RESET ROLE")
            assert connection.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 3
        finally:
            connection.execute("RESET ROLE")
            connection.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
            connection.execute(f'DROP ROLE "{role}"')  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        runtime_grants('x"; DROP TABLE users; --')


async def test_a_chain_from_before_keying_stays_verifiable_as_a_sealed_prefix(settings):
    """Migration 0005 keeps the entries chained with plain SHA-256 as a legacy prefix; the
    first keyed entry links to them, so rewriting them afterwards still breaks the chain."""
    from alembic import command
    from sqlalchemy import create_engine as create_sync_engine

    from control.db.engine import sync_url
    from control.db.migrate import alembic_config, upgrade

    upgrade(settings)  # (the PostgreSQL test database is a copy of a migrated template)
    command.downgrade(alembic_config(settings), "0003")  # the schema before keying
    legacy = create_sync_engine(sync_url(settings))
    previous = chain.GENESIS_HASH
    with legacy.begin() as connection:
        for index in range(3):
            entry = AuditEntry(
                occurred_at=datetime(2026, 1, 1, 0, 0, index, tzinfo=UTC),
                actor="old",
                actor_role="admin",
                action="legacy.event",
                target_type=None,
                target_id=None,
                outcome="success",
                client_ip=None,
                request_id=None,
                details=json.dumps({"i": index}),
                prev_hash=previous,
            )
            entry.entry_hash = previous = chain.entry_digest(entry, None)
            connection.execute(
                text(
                    "INSERT INTO audit_log (occurred_at, actor, actor_role, action, outcome, "
                    "details, prev_hash, entry_hash) VALUES (:at, 'old', 'admin', "
                    "'legacy.event', 'success', :details, :prev, :hash)"
                ),
                {
                    "at": entry.occurred_at,
                    "details": entry.details,
                    "prev": entry.prev_hash,
                    "hash": entry.entry_hash,
                },
            )
        connection.execute(text("UPDATE audit_head SET entries = 3"))
    legacy.dispose()
    upgrade(settings)

    app = create_app(settings)
    async with AsyncTestClient(app=app):
        pass  # start-up checkpoint (3 legacy entries) and shutdown
    engine = create_engine(settings)
    writer = SimpleNamespace(state=SimpleNamespace(session_factory=create_session_factory(engine)))
    try:
        async with writer.state.session_factory() as session:
            assert await session.scalar(select(AuditHead.keyed_from)) == 4
        await _append_many(writer, 2)
        writer.state.store = app.state.store
        report = await _verify_signed(writer)
        assert report.ok, report
        assert report.entries == 5
        assert report.checkpoint is not None and report.checkpoint.entries == 3
        # A database writer rewrites a legacy entry and re-chains with plain SHA-256: the
        # first keyed entry cannot be redone without the key, and the checkpoint's head is
        # gone from the chain.
        await _rewrite(writer, edit_id=2, digest=_legacy_digest)
        plain = await _verify_plain(writer)
        assert (plain.ok, plain.first_broken) == (False, 4)
        signed = await _verify_signed(writer)
        assert (signed.ok, signed.first_broken) == (False, 3)
        assert "checkpoint" in signed.reason
    finally:
        await engine.dispose()
