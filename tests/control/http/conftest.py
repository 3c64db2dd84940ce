"""A built-looking workstation directory and an app serving it (no database is touched)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.config import Settings
from tests.conftest import SECRET

INDEX_HTML = '<!doctype html><html><head><script type="module" src="/assets/index-abc.js">'
SECRET_TEXT = "outside the web directory"


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    """``dist/`` as Vite builds it, a secret file beside it and a symlink leading to it."""
    dist = tmp_path / "dist"
    assets = dist / "assets"
    assets.mkdir(parents=True)
    (dist / "index.html").write_text(INDEX_HTML + "</script></head></html>")
    (dist / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (assets / "index-abc.js").write_text("export const answer = 42;")
    (assets / "worker-def.mjs").write_text("self.onmessage = () => {};")
    (assets / "index-abc.css").write_text("body { color: white; }")
    (assets / "codec-123.wasm").write_bytes(b"\0asm\x01\0\0\0")
    (tmp_path / "secret.txt").write_text(SECRET_TEXT)
    (dist / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (assets / "outside").symlink_to(tmp_path, target_is_directory=True)
    return dist


def ui_settings(tmp_path: Path, web_dir: Path) -> Settings:
    """Settings for UI tests: the database is never opened, so migrations are off."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'medvision.db'}",
        secret_key=SECRET,
        web_dir=web_dir,
        migrate_on_startup=False,
        worker_enabled=False,
        triton_required=False,
    )


@pytest.fixture
async def ui_client(tmp_path: Path, web_dir: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(ui_settings(tmp_path, web_dir))) as client:
        yield client
