"""A real MedVision HTTP server on a free loopback port for ``dicomweb-client`` tests.

The app of the test's settings (SQLite or PostgreSQL, like every database test) served by
uvicorn in a thread of this process; accounts are made through the service layer before it
starts and log in over HTTP. Stopping sets uvicorn's exit flag and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import uvicorn

from control.app import create_app
from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.migrate import upgrade
from control.triton.server import find_free_port
from tests.conftest import PASSWORD

ACCOUNTS = {"pacs": "integration", "reader": "radiologist", "boss": "admin"}


@dataclass
class LiveServer:
    """Where the server listens (``url`` ends in ``/dicomweb``) and a token per account."""

    base_url: str
    tokens: dict[str, str]

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicomweb"

    def headers(self, account: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[account]}"}


async def _create_accounts(settings: Settings) -> None:
    from control.db.models import Role
    from control.domain.audit.chain import Actor
    from control.domain.users.service import create_user

    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            for username, role in ACCOUNTS.items():
                await create_user(session, username, PASSWORD, Role(role), Actor("test", "test"))
    finally:
        await engine.dispose()


def _token(base_url: str, username: str, role: str) -> str:
    form = (
        {"grant_type": "client_credentials", "client_id": username, "client_secret": PASSWORD}
        if role == "integration"
        else {"grant_type": "password", "username": username, "password": PASSWORD}
    )
    response = requests.post(f"{base_url}/api/auth/token", data=form, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app on ``http://127.0.0.1:<free port>`` with one account per role in ACCOUNTS."""
    upgrade(settings)
    asyncio.run(_create_accounts(settings))
    port = find_free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="medvision-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    try:
        tokens = {name: _token(base_url, name, role) for name, role in ACCOUNTS.items()}
        yield LiveServer(base_url, tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
