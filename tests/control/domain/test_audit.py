"""The hash-chained audit log: intact chains verify, every kind of tampering is named."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from control.domain.audit import chain
from control.domain.audit.chain import Actor


async def _append_many(app, count, concurrent=False):
    async def one(index):
        async with app.state.session_factory() as session:
            await chain.append(
                session, "test.event", Actor("tester", "admin"), details={"i": index}
            )
            await session.commit()

    if concurrent:
        await asyncio.gather(*(one(i) for i in range(count)))
    else:
        for i in range(count):
            await one(i)


async def _verify(app):
    async with app.state.session_factory() as session:
        return await chain.verify(session)


async def test_intact_chain_verifies(app, client, accounts):
    await _append_many(app, 5)
    report = await _verify(app)
    assert report.ok
    # 5 user creations, 5 token issues, 5 test events
    assert report.entries == 15
    response = await client.get("/api/audit/verify", headers=accounts["admin1"].headers)
    body = response.json()
    assert {k: body[k] for k in ("ok", "entries", "first_broken", "reason")} == {
        "ok": True,
        "entries": 15,
        "first_broken": None,
        "reason": None,
    }
    # checked against the signed checkpoint the server wrote at start-up
    assert body["checkpoint"]["key"].startswith("audit/checkpoints/")


async def test_concurrent_appends_never_fork_the_chain(app, client):
    await _append_many(app, 12, concurrent=True)
    report = await _verify(app)
    assert report.ok, report
    assert report.entries == 12


async def test_appends_of_one_session_chain_across_commits_and_rollbacks(app, client):
    """Several appends per transaction (only the first reads the chain's end), a rolled
    back transaction, then a savepoint rolled back, while other sessions append between the
    transactions: the chain verifies, and the rolled back entries are gone."""
    actor = Actor("tester", "admin")
    async with app.state.session_factory() as session:
        for index in range(3):
            await chain.append(session, "test.batch", actor, details={"i": index})
        await session.commit()
        await _append_many(app, 2)  # another session appends between this one's transactions
        await chain.append(session, "test.rolled_back", actor)
        await session.rollback()
        await _append_many(app, 1)
        await chain.append(session, "test.kept", actor)
        savepoint = await session.begin_nested()
        await chain.append(session, "test.rolled_back", actor)
        await savepoint.rollback()
        await chain.append(session, "test.kept", actor)
        await session.commit()
        actions = list(
            await session.scalars(
                text("SELECT action FROM audit_log WHERE action LIKE 'test.%' ORDER BY id")
            )
        )
    report = await _verify(app)
    assert report.ok, report
    assert report.entries == 8
    assert actions == ["test.batch"] * 3 + ["test.event"] * 3 + ["test.kept"] * 2


async def _tamper(app, statement, **params):
    async with app.state.session_factory() as session:
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        await session.execute(text(statement), params)
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        await session.commit()


async def test_edited_entry_is_named(app, client):
    await _append_many(app, 6)
    await _tamper(app, "UPDATE audit_log SET details = '{\"i\": 99}' WHERE id = 4")
    report = await _verify(app)
    assert not report.ok
    assert report.first_broken == 4
    assert "hash" in report.reason


async def test_rehashed_edit_breaks_the_next_link(app, client):
    await _append_many(app, 6)
    await _tamper(app, "UPDATE audit_log SET entry_hash = :h WHERE id = 3", h="f" * 64)
    report = await _verify(app)
    assert report.first_broken == 3
    await _tamper(app, "UPDATE audit_log SET prev_hash = :h WHERE id = 5", h="e" * 64)
    assert (await _verify(app)).first_broken == 3


async def test_deleted_entries_are_detected(app, client):
    await _append_many(app, 6)
    await _tamper(app, "DELETE FROM audit_log WHERE id = 2")
    report = await _verify(app)
    assert report.first_broken == 3
    assert "previous" in report.reason


async def test_truncated_tail_is_detected(app, client):
    await _append_many(app, 6)
    await _tamper(app, "DELETE FROM audit_log WHERE id = 6")
    report = await _verify(app)
    assert not report.ok
    assert report.first_broken == 6
    assert report.entries == 5


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_trigger_rejects_update_and_delete(app, client, database_url):
    """The append-only trigger exists on PostgreSQL only; SQLite relies on the hash chain."""
    assert database_url.startswith("postgresql")
    await _append_many(app, 2)
    for statement in (
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        async with app.state.session_factory() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement))
    assert (await _verify(app)).ok


def test_cli_verify_reports_intact_then_broken(tmp_path):
    env = {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path),
        "MEDVISION_PASSWORD": "a-long-enough-password",
        "MEDVISION_SECRET_KEY": "s" * 40,
    }
    cli = [sys.executable, "-m", "control.cli.main"]
    for name in ("admin", "second"):
        created = subprocess.run(
            [*cli, "users", "create", "--role", "admin", "--username", name],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 0, created.stderr
    intact = subprocess.run(
        [*cli, "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert intact.returncode == 0, intact.stderr
    assert '"ok": true' in intact.stdout
    assert '"entries": 2' in intact.stdout
    with sqlite3.connect(tmp_path / "medvision.db") as connection:
        connection.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
    broken = subprocess.run(
        [*cli, "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert broken.returncode == 1
    assert '"first_broken": 1' in broken.stdout
    assert "BROKEN at entry 1" in broken.stdout


async def _append_events(app, events):
    """Append ``(action, actor, target_id)`` events in order."""
    async with app.state.session_factory() as session:
        for action, actor, target_id in events:
            await chain.append(
                session, action, Actor(actor, "admin"), target_type="case", target_id=target_id
            )
        await session.commit()


async def _listed(client, account, **params):
    response = await client.get("/api/audit", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return [(e["action"], e["actor"], e["target_id"]) for e in response.json()]


async def test_listing_filters_by_actor_and_target_and_combines_them(app, client, accounts):
    events = [
        ("case.updated", "alice", "case-1"),
        ("case.assigned", "bob", "case-1"),
        ("case.updated", "bob", "case-2"),
        ("case.updated", "alice", "case-2"),
        ("case.updated", "alice-2", "case-10"),
    ]
    await _append_events(app, events)
    admin = accounts["admin1"]
    assert await _listed(client, admin, actor="alice") == [events[0], events[3]]
    assert await _listed(client, admin, target_id="case-1") == events[:2]
    assert await _listed(client, admin, actor="bob", target_id="case-2") == [events[2]]
    assert await _listed(client, admin, action="case.updated", actor="bob") == [events[2]]
    assert await _listed(client, admin, actor="nobody") == []


async def test_filtered_listing_pages_with_the_after_id_cursor(app, client, accounts):
    await _append_events(
        app, [("case.updated", "alice" if i % 2 else "bob", "c") for i in range(7)]
    )
    admin = accounts["admin1"]
    first = (
        await client.get("/api/audit", params={"actor": "bob", "limit": 2}, headers=admin.headers)
    ).json()
    assert len(first) == 2
    rest = (
        await client.get(
            "/api/audit",
            params={"actor": "bob", "after_id": first[-1]["id"], "limit": 10},
            headers=admin.headers,
        )
    ).json()
    assert [e["actor"] for e in first + rest] == ["bob"] * 4
    ids = [e["id"] for e in first + rest]
    assert ids == sorted(ids) and len(set(ids)) == 4


@pytest.mark.parametrize("name", ["action", "actor", "target_id"])
async def test_overlong_filters_are_refused(client, accounts, name):
    response = await client.get(
        "/api/audit", params={name: "x" * 65}, headers=accounts["admin1"].headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [error["key"] for error in body["detail"]["errors"]] == [name]
