"""Issue #11, authentication and tokens: what a hostile or racing client got through.

Bounded token requests that are always audited; refresh rotation with exactly one winner;
an atomic login throttle; forwarded headers only from trusted proxies; case-insensitive
usernames; sessions ending on password change, disable and re-enable; the last admin kept
under concurrent demotion; server-made request ids; a signed token with a non-role.
Every database test runs on SQLite and PostgreSQL; races use real concurrent requests or
sessions (``asyncio.gather``), each on its own connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.db.migrate import alembic_config, upgrade
from control.db.models import AuditEntry, Role, User
from control.domain.audit.chain import Actor
from control.domain.auth.tokens import TokenCodec
from control.domain.users import service as users
from control.http.client_address import client_address
from tests.conftest import PASSWORD, SECRET, make_account

NEW_PASSWORD = "another-long-passphrase"


async def _token(client, headers=None, **form):
    return await client.post("/api/auth/token", data=form, headers=headers or {})


async def _audit(app, action: str) -> list[AuditEntry]:
    async with app.state.session_factory() as session:
        query = sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list((await session.scalars(query)).all())


@pytest.fixture
async def racing(app, client):
    """A client whose requests really run at once, in this event loop, each on its own
    database connection. (The test client runs one request at a time, whatever gathers it.)
    ``client`` keeps the app's lifespan up meanwhile."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as racer:
        yield racer


async def _me(client, token: str):
    return await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})


# --- 1. bounded token requests, failed logins always audited ---------------------------------


@pytest.mark.parametrize("field", ["username", "client_id"])
async def test_oversized_login_name_is_refused_and_audited_bounded(app, client, field):
    grant = "password" if field == "username" else "client_credentials"
    secret = "password" if field == "username" else "client_secret"
    response = await _token(client, grant_type=grant, **{field: "u" * 5000, secret: PASSWORD})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.actor is not None
    assert len(entry.actor) == 64
    assert entry.actor.endswith("\u2026")
    assert json.loads(entry.details) == {"reason": "invalid_request", "field": field}


async def test_login_name_with_control_characters_is_refused_and_audited(app, client):
    # An escape sequence (terminal injection for whoever reads the log); NUL is refused
    # earlier still, by control.http.input_guard.
    response = await _token(client, grant_type="password", username="ad\x1bmin", password="x" * 12)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.actor == "ad?min"


@pytest.mark.parametrize(
    ("field", "size"), [("password", 1025), ("refresh_token", 4097), ("grant_type", 33)]
)
async def test_every_token_field_is_bounded(app, client, field, size):
    form = {"grant_type": "password", "username": "rad1", "password": PASSWORD}
    form[field] = "p" * size
    response = await _token(client, **form)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
    [entry] = await _audit(app, "auth.login_failed")
    assert json.loads(entry.details)["field"] == field


async def test_token_body_over_the_limit_is_refused_unread_and_audited(app, client):
    response = await _token(client, grant_type="password", username="u" * 100_000, password="x")
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.actor is None
    assert json.loads(entry.details)["reason"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (
            "grant_type=password&username=" + "u" * (2 * 1024 * 1024) + "&password=x",
            413,
            "body_too_large",
        ),
        ("grant_type=password&username=ad%00min&password=x", 400, "nul_byte"),
        ("grant_type=password&username=ad\x00min&password=x", 400, "nul_byte"),
    ],
    ids=["over-1MiB", "encoded-nul", "raw-nul"],
)
async def test_token_request_refused_before_routing_is_still_an_audited_failed_login(
    app, client, body, status, reason
):
    """The input guard answers these before the token endpoint runs; the attempt is audited
    all the same, with no username (none was read) and the guard's error code."""
    response = await client.post(
        "/api/auth/token",
        content=body.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == reason
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.actor is None
    assert json.loads(entry.details)["reason"] == reason


async def test_long_client_address_is_bounded_and_the_failure_audited(app, client):
    """A peer name over 64 characters (PostgreSQL: 500 and no audit entry before)."""
    transport = httpx.ASGITransport(app=app, client=("h" * 200, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        response = await _token(raw, grant_type="password", username="ghost", password="x" * 12)
    assert response.status_code == 400, response.text
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.client_ip == "h" * 64


# --- 2. refresh rotation: exactly one winner, reuse revokes the family ------------------------


async def test_concurrent_refreshes_of_one_token_have_exactly_one_winner(client, racing, accounts):
    rad = accounts["rad1"]
    responses = await asyncio.gather(
        *(
            _token(racing, grant_type="refresh_token", refresh_token=rad.refresh_token)
            for _ in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * 7, [r.text for r in responses]
    assert all(r.json()["code"] == "invalid_grant" for r in responses if r.status_code == 400)
    # The losers were reuse: the family is revoked, the winner's new refresh token included.
    [winner] = [response.json() for response in responses if response.status_code == 200]
    again = await _token(client, grant_type="refresh_token", refresh_token=winner["refresh_token"])
    assert again.status_code == 400


async def test_refresh_reuse_revokes_its_family_only(app, client, accounts):
    rad = accounts["rad1"]
    other_login = await _token(client, grant_type="password", username="rad1", password=PASSWORD)
    other_refresh = other_login.json()["refresh_token"]
    rotated = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert rotated.status_code == 200
    replay = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert replay.status_code == 400
    newest = rotated.json()["refresh_token"]
    assert (
        await _token(client, grant_type="refresh_token", refresh_token=newest)
    ).status_code == 400
    # The session from the other login is another family and keeps working.
    other = await _token(client, grant_type="refresh_token", refresh_token=other_refresh)
    assert other.status_code == 200, other.text
    reuse = [e for e in await _audit(app, "auth.login_failed") if "refresh_reuse" in e.details]
    assert len(reuse) == 2  # the replay, then the newest token its family revocation ended
    assert all(json.loads(entry.details)["family_revoked"] is True for entry in reuse)


# --- 3. atomic throttle, trusted proxies, case-insensitive usernames ------------------------


async def _parallel_wrong_passwords(racing, monkeypatch, username: str, n: int) -> list[int]:
    from control.domain.auth import service as auth_service

    checked: list[str] = []
    real_verify = auth_service.verify_password

    def counting_verify(password: str, password_hash: str | None) -> bool:
        checked.append(password)
        return real_verify(password, password_hash)

    monkeypatch.setattr(auth_service, "verify_password", counting_verify)
    responses = await asyncio.gather(
        *(
            _token(racing, grant_type="password", username=username, password=f"wrong-{i:08d}")
            for i in range(n)
        )
    )
    assert len(checked) <= 3, f"{len(checked)} passwords were checked; the limit is 3"
    return sorted(response.status_code for response in responses)


async def test_parallel_wrong_passwords_are_checked_at_most_limit_times(
    racing, accounts, monkeypatch
):
    # settings fixture: login_max_failures=3
    statuses = await _parallel_wrong_passwords(racing, monkeypatch, "rad1", 20)
    assert statuses == [400] * 3 + [429] * 17


async def test_parallel_wrong_passwords_with_redis_are_checked_at_most_limit_times(
    settings, monkeypatch
):
    import redis.asyncio as aioredis

    from tests.conftest import REQUIRE_SERVICES

    url = "redis://127.0.0.1:6379/14"
    probe = aioredis.from_url(url)
    try:
        await probe.ping()
    except Exception:
        if REQUIRE_SERVICES:
            raise
        pytest.skip("needs the Redis server on 127.0.0.1:6379")
    # Keys of this run only (a name and an address of its own): another run may share db 14.
    run = uuid.uuid4()
    username, address = f"racer{run.hex[:8]}", f"127.{run.bytes[0]}.{run.bytes[1]}.{run.bytes[2]}"
    patterns = (f"*login-fail:user:{username}", f"*login-fail:ip:{address}")

    async def forget() -> None:
        for pattern in patterns:
            for key in await probe.keys(pattern):
                await probe.delete(key)

    await forget()
    # No lifespan here (its loop would not be this one, where the Redis client connects):
    # the database is migrated directly and the client closed at the end.
    upgrade(settings)
    app = create_app(settings.model_copy(update={"redis_url": url, "migrate_on_startup": False}))
    try:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as racing:
            statuses = await _parallel_wrong_passwords(racing, monkeypatch, username, 20)
        assert statuses == [400] * 3 + [429] * 17
    finally:
        await app.state.cache._redis.aclose()
        await forget()
        await probe.aclose()


async def test_forwarded_for_counts_only_from_trusted_proxies(settings):
    app = create_app(settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]}))
    forged = {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}
    async with AsyncTestClient(app=app):
        for peer in ("10.0.0.5", "198.51.100.7"):
            transport = httpx.ASGITransport(app=app, client=(peer, 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
                await _token(raw, forged, grant_type="password", username="x1", password="y" * 12)
        entries = await _audit(app, "auth.login_failed")
    # Behind the trusted proxy: the first untrusted hop. From anyone else: the peer itself.
    assert [entry.client_ip for entry in entries] == ["203.0.113.9", "198.51.100.7"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", "1.2.3.4", (), "198.51.100.7"),
        ("10.0.0.5", "1.2.3.4", (), "10.0.0.5"),
        ("10.0.0.5", "1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.9.9.9", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.5", "10.1.1.1, 10.2.2.2", ("10.0.0.0/8",), "10.1.1.1"),
        ("10.0.0.5", "1.2.3.4, not-an-address", ("10.0.0.0/8",), "10.0.0.5"),
        ("10.0.0.5", "x" * 500, ("10.0.0.0/8",), "10.0.0.5"),
        ("10.0.0.5", None, ("10.0.0.0/8",), "10.0.0.5"),
        ("::1", "2001:db8::7", ("::1",), "2001:db8::7"),
        ("testclient", "1.2.3.4", ("10.0.0.0/8",), "testclient"),
    ],
)
def test_client_address_cases(peer, forwarded, trusted, expected):
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 1), "headers": headers}
    assert client_address(scope, trusted) == expected  # type: ignore[arg-type]


def test_serve_turns_off_uvicorn_forwarded_headers(monkeypatch, tmp_path):
    """uvicorn's own proxy_headers default believes X-Forwarded-For from 127.0.0.1."""
    import uvicorn
    from typer.testing import CliRunner

    from control.cli.main import app as cli

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda _app, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("MEDVISION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MEDVISION_SECRET_KEY", SECRET)
    result = CliRunner().invoke(cli, ["serve", "--no-worker"])
    assert result.exit_code == 0, result.output
    assert calls[0]["proxy_headers"] is False


def test_real_server_ignores_forwarded_for_from_an_untrusted_peer(tmp_path):
    """End to end through uvicorn: a failed login from 127.0.0.1 claiming another address."""
    from control.triton.server import find_free_port

    port = find_free_port()
    env = {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path / "var"),
        "MEDVISION_SECRET_KEY": SECRET,
        "MEDVISION_TRITON_REQUIRED": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "control.cli.main", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5).close()
                break
            except OSError:
                assert server.poll() is None, "medvision serve exited"
                assert time.monotonic() < deadline, "medvision serve did not start"
                time.sleep(0.2)
        form = urllib.parse.urlencode(
            {"grant_type": "password", "username": "ghost", "password": "x" * 12}
        ).encode()
        request = urllib.request.Request(
            f"{base}/api/auth/token", data=form, headers={"X-Forwarded-For": "203.0.113.77"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
    with sqlite3.connect(tmp_path / "var" / "medvision.db") as db:
        rows = db.execute(
            "SELECT client_ip FROM audit_log WHERE action = 'auth.login_failed'"
        ).fetchall()
    assert rows == [("127.0.0.1",)]


async def test_usernames_are_unique_regardless_of_case(app, client, accounts):
    admin = accounts["admin1"]
    twin = await client.post(
        "/api/users",
        json={"username": "RAD1", "password": "a-long-password!", "role": "admin"},
        headers=admin.headers,
    )
    assert twin.status_code == 409, twin.text
    assert twin.json()["code"] == "username_taken"
    # The name is one account, whatever its case; so is its throttle key.
    login = await _token(client, grant_type="password", username="Rad1", password=PASSWORD)
    assert login.status_code == 200, login.text
    assert login.json()["role"] == "radiologist"


async def test_database_refuses_usernames_differing_only_in_case(app, accounts):
    """The unique index decides, not only the service's check (two creations can race)."""
    async with app.state.session_factory() as session:
        session.add(User(username="Admin1", password_hash="x", role=Role.ADMIN))
        with pytest.raises(sa.exc.IntegrityError):
            await session.flush()


def _migrate(settings, revision: str, *, down: bool = False) -> None:
    from alembic import command

    config = alembic_config(settings)
    (command.downgrade if down else command.upgrade)(config, revision)


async def test_migration_stops_on_existing_case_duplicates_and_then_applies(settings):
    _migrate(settings, "head")
    _migrate(settings, "0002", down=True)
    engine = sa.create_engine(settings.resolved_database_url.replace("+aiosqlite", ""))
    insert = sa.text(
        "INSERT INTO users (id, username, password_hash, role, is_active, created_at, updated_at)"
        " VALUES (:id, :name, 'x', 'radiologist', :active, :now, :now)"
    )
    try:
        with engine.begin() as connection:
            for name in ("dup", "DUP"):
                connection.execute(
                    insert,
                    {"id": uuid.uuid4().hex, "name": name, "active": True, "now": "2026-01-01"},
                )
        with pytest.raises(RuntimeError, match=r"dup \(2 accounts\)"):
            _migrate(settings, "head")
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM users WHERE username = 'DUP'"))
        upgrade(settings)
        with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError):
            connection.execute(
                insert, {"id": uuid.uuid4().hex, "name": "Dup", "active": True, "now": "2026-01-01"}
            )
    finally:
        engine.dispose()


# --- 4. a password change, disable or re-enable ends the sessions before it -----------------


async def test_password_change_ends_existing_sessions(client, accounts):
    admin, rad = accounts["admin1"], accounts["rad1"]
    changed = await client.patch(
        f"/api/users/{rad.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    old_access = await _me(client, rad.token)
    assert old_access.status_code == 401
    assert old_access.json()["code"] == "token_revoked"
    old_refresh = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert old_refresh.status_code == 400
    fresh = await _token(client, grant_type="password", username="rad1", password=NEW_PASSWORD)
    assert fresh.status_code == 200
    assert (await _me(client, fresh.json()["access_token"])).status_code == 200
    # The admin's own session is untouched.
    assert (await _me(client, admin.token)).status_code == 200


async def test_disable_and_reenable_do_not_bring_old_sessions_back(client, accounts):
    admin, rad = accounts["admin1"], accounts["rad1"]
    for active in (False, True):
        response = await client.patch(
            f"/api/users/{rad.id}", json={"is_active": active}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    assert (await _me(client, rad.token)).status_code == 401
    refresh = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert refresh.status_code == 400
    assert refresh.json()["code"] == "invalid_grant"
    again = await _token(client, grant_type="password", username="rad1", password=PASSWORD)
    assert again.status_code == 200


async def test_session_ending_is_audited(app, client, accounts):
    admin, rad = accounts["admin1"], accounts["rad1"]
    await client.patch(f"/api/users/{rad.id}", json={"full_name": "R. One"}, headers=admin.headers)
    assert (await _me(client, rad.token)).status_code == 200  # a name change ends nothing
    await client.patch(
        f"/api/users/{rad.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )
    details = [json.loads(e.details) for e in await _audit(app, "user.updated")]
    assert details == [
        {"full_name": "changed"},
        {"password": "changed", "sessions_ended": True},
    ]


# --- 5. at least one active admin, also under concurrent demotion ---------------------------


async def test_two_admins_demoting_each_other_leave_one_admin(app, client, racing, accounts):
    first = accounts["admin1"]
    second = await make_account(app, client, "admin2", "admin")
    demotions = await asyncio.gather(
        racing.patch(f"/api/users/{second.id}", json={"role": "mlops"}, headers=first.headers),
        racing.patch(f"/api/users/{first.id}", json={"role": "mlops"}, headers=second.headers),
    )
    assert sorted(r.status_code for r in demotions)[0] == 200, [r.text for r in demotions]
    refused = [r for r in demotions if r.status_code != 200]
    assert len(refused) == 1
    # Refused either as the last admin or, if it arrived later, for its stale role.
    assert refused[0].json()["code"] in {"last_admin", "token_revoked"}, refused[0].text
    async with app.state.session_factory() as session:
        admins = await session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN, User.is_active.is_(True))
        )
    assert admins == 1


@pytest.mark.parametrize("change", [{"role": Role.MLOPS}, {"is_active": False}])
async def test_concurrent_sessions_cannot_remove_the_last_two_admins(app, accounts, change):
    """The service itself, two transactions at once (no HTTP or token checks in between)."""
    async with app.state.session_factory() as session:
        second = await users.create_user(session, "admin2", PASSWORD, Role.ADMIN, Actor("t", "t"))
    first_id = uuid.UUID(accounts["admin1"].id)

    async def remove(user_id: uuid.UUID) -> str:
        async with app.state.session_factory() as session:
            try:
                await users.update_user(session, user_id, Actor("t", "t"), **change)
            except Exception as exc:
                return getattr(exc, "code", type(exc).__name__)
            return "ok"

    outcomes = await asyncio.gather(remove(first_id), remove(second.id))
    assert sorted(outcomes) == ["last_admin", "ok"]


async def test_last_admin_cannot_be_removed_by_another_route(app, accounts):
    async with app.state.session_factory() as session:
        with pytest.raises(Exception) as refused:
            await users.update_user(
                session, uuid.UUID(accounts["admin1"].id), Actor("t", "t"), is_active=False
            )
    assert getattr(refused.value, "code", None) == "last_admin"


# --- 7. request ids are made by the server --------------------------------------------------


async def test_request_id_is_made_by_the_server_and_audited(app, client, capsys):
    response = await _token(
        client,
        {"X-Request-ID": "forged-id-1"},
        grant_type="password",
        username="ghost",
        password="x" * 12,
    )
    server_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", server_id)
    assert response.json()["request_id"] == server_id
    [entry] = await _audit(app, "auth.login_failed")
    assert entry.request_id == server_id
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [json.loads(line) for line in lines if '"event": "request"' in line]
    mine = [r for r in access if r.get("request_id") == server_id]
    assert mine and mine[0]["client_request_id"] == "forged-id-1"


async def test_malformed_client_request_id_is_not_logged(client, capsys):
    response = await client.get("/health", headers={"X-Request-ID": "bad id " + "z" * 100})
    server_id = response.headers["x-request-id"]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    mine = [json.loads(line) for line in lines if server_id in line]
    assert mine
    assert all("client_request_id" not in record for record in mine)


# --- 14. a validly signed token whose role is not a role ------------------------------------


@pytest.mark.parametrize("claims", [{"role": "superuser"}, {"gen": "zero"}, {"role": 7}])
async def test_signed_token_with_malformed_claims_is_401(client, accounts, claims):
    admin = accounts["admin1"]
    codec = TokenCodec(SECRET.encode(), 600, 600)
    issued = codec.issue(admin.id, admin.username, "admin", "access")
    from joserfc import jwt

    payload = jwt.decode(issued.token, codec._key).claims
    payload.update(claims)
    forged = jwt.encode({"alg": "HS256", "typ": "JWT"}, payload, codec._key)
    response = await _me(client, forged)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"


def test_token_generation_is_carried_and_checked_by_the_codec():
    codec = TokenCodec(SECRET.encode(), 600, 600)
    issued = codec.issue(str(uuid.uuid4()), "u", "radiologist", "refresh", generation=3)
    claims = codec.verify(issued.token, "refresh")
    assert claims.generation == 3
    assert claims.role is Role.RADIOLOGIST


def test_migrations_have_one_head(tmp_path: Path):
    from alembic.script import ScriptDirectory

    from control.config import Settings

    script = ScriptDirectory.from_config(alembic_config(Settings(data_dir=tmp_path)))
    assert len(script.get_heads()) == 1, script.get_heads()
