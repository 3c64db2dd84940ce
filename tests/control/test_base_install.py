"""The control-plane-only install (``pip install .``, no extras) works on its own.

The control-plane container image of the deployment relies on it: a dependency that only
arrives through an extra (``pydantic_settings`` once did) breaks ``medvision`` at import.
The base distribution is installed into a fresh virtual environment with nothing else in
it, then its CLI and a ``medvision serve`` smoke check run from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from control.triton.server import find_free_ports

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("base-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # A copy of the sources without build outputs: the install must not see web/node_modules.
    source = venv.parent / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "var", "dist", "build", "*.egg-info", "__pycache__"
        ),
    )
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    return venv


def _env(tmp_path: Path) -> dict[str, str]:
    keep = {"PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE"}
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update(
        MEDVISION_DATA_DIR=str(tmp_path / "var"),
        MEDVISION_TRITON_REQUIRED="false",
        # The test's own interpreter must not leak the development venv's packages.
        PYTHONNOUSERSITE="1",
    )
    return env


def test_base_install_has_no_extras(base_venv: Path):
    python = base_venv / "bin" / "python"
    for extra_only in ("torch", "monai", "onnx", "mlflow", "pytest"):
        probe = subprocess.run(
            [str(python), "-c", f"import importlib.util as u; print(u.find_spec({extra_only!r}))"],
            capture_output=True,
            text=True,
        )
        assert probe.stdout.strip() == "None", (extra_only, probe.stdout, probe.stderr)


def test_medvision_help_runs_from_the_base_install(base_venv: Path, tmp_path: Path):
    for args in (["--help"], ["serve", "--help"], ["users", "--help"], ["audit", "--help"]):
        result = subprocess.run(
            [str(base_venv / "bin" / "medvision"), *args],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=60,
        )
        assert result.returncode == 0, (args, result.stderr[-3000:])
        assert "Usage" in result.stdout


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_medvision_serve_starts_from_the_base_install(base_venv: Path, tmp_path: Path):
    (port,) = find_free_ports(1)
    server = subprocess.Popen(
        [str(base_venv / "bin" / "medvision"), "serve", "--port", str(port), "--no-worker"],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, _ = _get(f"{base}/health")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, server.stderr.read()[-3000:] if server.poll() is not None else ""
        ready, body = _get(f"{base}/ready")
        assert ready == 200, body
        schema, document = _get(f"{base}/schema/openapi.json")
        assert schema == 200 and b'"/api/studies"' in document
        unauthorised, _ = _get(f"{base}/api/cases")
        assert unauthorised == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
