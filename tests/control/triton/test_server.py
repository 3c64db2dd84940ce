"""TritonServer and ``medvision triton serve`` with a real tritonserver from nvidia-pytriton."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from control.triton.server import (
    TritonServer,
    TritonStartError,
    find_triton_install,
    free_triton_ports,
    prepare_backends_dir,
    server_environment,
)
from tests.control.triton import DOUBLE_CONFIG, DOUBLE_MODEL, skip_without_triton, write_model

skip_without_triton()

REPO_ROOT = Path(__file__).resolve().parents[3]


class Ports(TypedDict):
    http_port: int
    grpc_port: int
    metrics_port: int


def ports() -> Ports:
    return free_triton_ports()


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    write_model(root, "double", DOUBLE_CONFIG, DOUBLE_MODEL)
    return root


@pytest.fixture(scope="module")
def forwarded() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(repository: Path, forwarded: list[str]) -> Iterator[TritonServer]:
    with TritonServer(repository, forward_log=forwarded.append, **ports()) as running:
        yield running


def test_server_is_ready_on_loopback(server: TritonServer) -> None:
    assert http_status(f"{server.url_http}/v2/health/ready") == 200
    assert http_status(f"{server.url_http}/v2/models/double/ready") == 200
    assert server.url_grpc == f"127.0.0.1:{server.grpc_port}"
    assert server.url_http.startswith("http://127.0.0.1:")
    assert server.poll() is None


def test_log_is_written_and_forwarded(server: TritonServer, forwarded: list[str]) -> None:
    def seen() -> tuple[bool, bool]:  # a reader thread writes and forwards the lines
        written = "Started GRPCInferenceService at 127.0.0.1" in server.log_path.read_text()
        return written, any("successfully loaded 'double'" in line for line in forwarded)

    deadline = time.monotonic() + 10
    while seen() != (True, True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen() == (True, True)


def test_stop_terminates_and_is_idempotent(repository: Path) -> None:
    server = TritonServer(repository, **ports())
    server.start()
    pid = server.pid
    assert pid is not None
    assert server.stop() == 0
    assert server.stop() is None
    assert http_status(f"{server.url_http}/v2/health/ready") is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_backends_dir_has_stub_beside_backend(tmp_path: Path) -> None:
    install = find_triton_install()
    backends = prepare_backends_dir(install, tmp_path)
    stub = backends / "python" / "triton_python_backend_stub"
    assert stub.is_file() and os.access(stub, os.X_OK)
    assert (backends / "python" / "libtriton_python.so").resolve().is_file()
    assert prepare_backends_dir(install, tmp_path) == backends


def test_child_environment_sees_libraries_venv_and_repo_root() -> None:
    install = find_triton_install()
    env = server_environment(install, {"PATH": "/usr/bin", "PYTHONPATH": "/extra"})
    assert str(install.libs) in env["LD_LIBRARY_PATH"].split(os.pathsep)
    pythonpath = env["PYTHONPATH"].split(os.pathsep)
    assert pythonpath[0] == str(REPO_ROOT)
    assert "/extra" in pythonpath
    if sys.prefix != sys.base_prefix:
        assert env["VIRTUAL_ENV"] == sys.prefix
        assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.prefix) / "bin")
    assert env["OPENBLAS_NUM_THREADS"] == "1"  # no spin-waiting BLAS threads in the stubs
    chosen = server_environment(install, {"PATH": "/usr/bin", "OPENBLAS_NUM_THREADS": "4"})
    assert chosen["OPENBLAS_NUM_THREADS"] == "4"  # an operator's own setting is kept


def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    write_model(
        tmp_path,
        "broken",
        DOUBLE_CONFIG.replace('"double"', '"broken"'),
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('cannot load weights')\n",
    )
    server = TritonServer(tmp_path, startup_timeout_s=60, **ports())
    started = time.monotonic()
    with pytest.raises(TritonStartError) as caught:
        server.start()
    assert time.monotonic() - started < 30
    assert caught.value.code == "triton_start_failed"
    assert "cannot load weights" in caught.value.detail["log_tail"]
    assert server.poll() is None and server.pid is None


def test_port_in_use_is_refused_before_spawning(repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = TritonServer(
            repository,
            **{**free_triton_ports(), "http_port": taken.getsockname()[1]},
        )
        with pytest.raises(TritonStartError, match="already in use"):
            server.start()
    assert server.pid is None


def test_cli_serve_answers_ready_and_exits_0_on_sigterm(repository: Path, tmp_path: Path) -> None:
    chosen = ports()
    output_path = tmp_path / "serve.out"
    output_file = output_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control.cli.triton",
            "serve",
            "--repository",
            str(repository),
            "--http-port",
            str(chosen["http_port"]),
            "--grpc-port",
            str(chosen["grpc_port"]),
            "--metrics-port",
            str(chosen["metrics_port"]),
        ],
        cwd=REPO_ROOT,
        stdout=output_file,
        stderr=subprocess.STDOUT,
    )
    try:
        ready_url = f"http://127.0.0.1:{chosen['http_port']}/v2/health/ready"
        deadline = time.monotonic() + 60
        while http_status(ready_url) != 200:
            assert process.poll() is None, output_path.read_text()
            assert time.monotonic() < deadline, "medvision triton serve never became ready"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output_file.close()
    output = output_path.read_text()
    assert process.returncode == 0, output
    assert f"gRPC 127.0.0.1:{chosen['grpc_port']}" in output
    assert "Signal (15) received" in output  # Triton's own shutdown, forwarded
    assert http_status(ready_url) is None
