"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, the app, users, tokens.

Every database test runs twice, ``[sqlite]`` and ``[postgres]``. PostgreSQL tests need the
server on 127.0.0.1:5432; they skip with that reason when it is down, unless
MEDVISION_REQUIRE_SERVICES=1 (set by .ci/run), where they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.config import Settings
from control.db.migrate import upgrade
from tests.fixtures.s3server import s3_server  # noqa: F401  (shared fixture)

PG_ADMIN_URL = os.environ.get("MEDVISION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("MEDVISION_REQUIRE_SERVICES") == "1"
SECRET = "test-secret-key-" + "x" * 32
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with test-sized cost: the algorithm is the same, the suite much faster."""
    from argon2 import PasswordHasher

    from control.domain.auth import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def _admin_exec(*statements: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template for each test's database."""
    if not _pg_available():
        reason = "needs the PostgreSQL server on 127.0.0.1:5432"
        if REQUIRE_SERVICES:
            pytest.fail(reason + " (MEDVISION_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    name = f"mv_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    upgrade(Settings(database_url=_pg_url(name), secret_key=SECRET))
    yield name
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database for one test: a SQLite file, or a throwaway PG database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'medvision.db'}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"mv_test_{os.getpid()}_{secrets.token_hex(4)}"
    _admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _pg_url(name)
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, data directory and keys; small login limits."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key=SECRET,
        log_json=True,
        login_max_failures=3,
        triton_required=False,
        # Tests that need the job worker start one against a real Triton server.
        worker_enabled=False,
    )


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@dataclass
class Account:
    id: str
    username: str
    role: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_account(
    app: Litestar, client: AsyncTestClient[Litestar], username: str, role: str
) -> Account:
    """Create a user directly through the service layer and log in through the API."""
    from control.db.models import Role
    from control.domain.audit.chain import Actor
    from control.domain.users.service import create_user

    async with app.state.session_factory() as session:
        user = await create_user(session, username, PASSWORD, Role(role), Actor("test", "test"))
    if role == "integration":
        form = {
            "grant_type": "client_credentials",
            "client_id": username,
            "client_secret": PASSWORD,
        }
    else:
        form = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await client.post("/api/auth/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    return Account(str(user.id), username, role, body["access_token"], body["refresh_token"])


@pytest.fixture
async def accounts(app: Litestar, client: AsyncTestClient[Litestar]) -> dict[str, Account]:
    """One logged-in account per role, plus a second radiologist."""
    result = {}
    for username, role in [
        ("admin1", "admin"),
        ("rad1", "radiologist"),
        ("rad2", "radiologist"),
        ("pacs1", "integration"),
        ("mlops1", "mlops"),
    ]:
        result[username] = await make_account(app, client, username, role)
    return result
