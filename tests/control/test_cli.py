"""The ``medvision`` command line, run as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

CLI = [sys.executable, "-m", "control.cli.main"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path / "var"),
        "MEDVISION_SECRET_KEY": "c" * 40,
        "MEDVISION_PASSWORD": "a-long-enough-password",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=False)


def test_help_does_not_import_torch(env):
    probe = (
        "import sys; from typer.testing import CliRunner; from control.cli.main import app;"
        "result = CliRunner().invoke(app, ['--help']);"
        "assert result.exit_code == 0, result.output;"
        "assert 'ingest' in result.output and 'users' in result.output;"
        "assert 'torch' not in sys.modules, 'torch was imported';"
        "assert 'control.app' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_control_plane_does_not_import_training(env):
    """The served contract comes from medvision_contract; training/ is for training only."""
    probe = (
        "import sys, control.app, control.inference.worker, control.dicom.listener;"
        "loaded = sorted(m for m in sys.modules if m == 'training' or m.startswith('training.'));"
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_users_create_takes_password_from_environment(env):
    created = run(env, "users", "create", "--role", "admin", "--username", "boss")
    assert created.returncode == 0, created.stderr
    assert "created admin 'boss'" in created.stdout
    again = run(env, "users", "create", "--role", "admin", "--username", "boss")
    assert again.returncode == 1
    assert "username_taken" in again.stderr
    weak = run(
        {**env, "MEDVISION_PASSWORD": "short"},
        "users", "create", "--role", "radiologist", "--username", "weak",
    )  # fmt: skip
    assert weak.returncode == 1
    assert "weak_password" in weak.stderr
    bad_role = run(env, "users", "create", "--role", "superuser", "--username", "x")
    assert bad_role.returncode == 2


def test_invalid_settings_are_listed_one_per_line(env):
    bad = {**env, "MEDVISION_DATABASE_URL": "mysql://x", "MEDVISION_ACCESS_TOKEN_TTL_S": "5"}
    result = run(bad, "users", "create", "--role", "admin", "--username", "boss")
    assert result.returncode == 2
    assert "MEDVISION_DATABASE_URL:" in result.stderr
    assert "MEDVISION_ACCESS_TOKEN_TTL_S:" in result.stderr


def test_ingest_folder_is_idempotent_and_reports_rejects(env, tmp_path):
    folder = tmp_path / "incoming"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "nested" / "mr.dcm")
    first = run(env, "ingest", str(folder))
    assert first.returncode == 0, first.stderr
    assert "2 studies, 2 new instances, 0 already stored, 0 rejected" in first.stdout
    second = run(env, "ingest", str(folder))
    assert "2 studies, 0 new instances, 2 already stored, 0 rejected" in second.stdout
    (folder / "notes.txt").write_text("not an image")
    third = run(env, "ingest", str(folder))
    assert third.returncode == 1
    assert "notes.txt: [not_dicom]" in third.stderr
    verify = run(env, "audit", "verify")
    assert verify.returncode == 0
    assert '"entries": 2' in verify.stdout


def test_db_upgrade_is_idempotent(env):
    from alembic.script import ScriptDirectory

    from control.db.migrate import MIGRATIONS_DIR

    (head,) = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()  # one head: a linear chain
    for _ in range(2):
        result = run(env, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert f"database at revision {head}" in result.stdout
    assert run(env, "db", "current").stdout.strip() == head


def test_openapi_is_printed_without_a_server_or_database(env, tmp_path):
    result = run(env, "openapi")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert "/api/cases/{case_id}/instances/{instance_id}/file" in document["paths"]
    assert "/api/auth/token" in document["paths"]
    assert not (tmp_path / "var").exists(), "openapi touched the data directory"
    out = tmp_path / "openapi.json"
    written = run(env, "openapi", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_text() == result.stdout  # stable: sorted keys, fixed indent


def test_serve_sends_security_headers_and_no_server_header(env, tmp_path):
    from control.triton.server import find_free_port

    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>MedVision</title>")
    port = find_free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--no-worker", "--port", str(port)],
        env={**env, "MEDVISION_WEB_DIR": str(dist), "MEDVISION_TRITON_REQUIRED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as health:
                    assert "server" not in health.headers
                    assert health.headers["x-content-type-options"] == "nosniff"
                    break
            except OSError:
                assert server.poll() is None, "medvision serve exited"
                assert time.monotonic() < deadline, "medvision serve did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/cases/1", timeout=5) as page:
            assert page.read().startswith(b"<!doctype html>")
            assert "server" not in page.headers
            assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_worker_leaves_the_schema_alone_when_migrations_are_off(env, tmp_path):
    """A worker running as a PostgreSQL runtime role (owning nothing) must not migrate."""
    import sqlite3

    worker = subprocess.Popen(
        [*CLI, "worker"],
        env={**env, "MEDVISION_MIGRATE_ON_STARTUP": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert "MedVision worker" in worker.stdout.readline()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    database = tmp_path / "var" / "medvision.db"
    tables = []
    if database.exists():
        with sqlite3.connect(database) as connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
    assert "alembic_version" not in tables and "cases" not in tables, tables
