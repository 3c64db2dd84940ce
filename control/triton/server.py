"""A local Triton Inference Server, run from the ``nvidia-pytriton`` wheel.

The wheel ships ``tritonserver``, ``libtritonserver`` and the Python backend, but the Python
backend stub lives apart from ``libtriton_python.so``. :func:`prepare_backends_dir` builds a
private backends directory (the backend library linked, the stub for this interpreter copied
beside it) in a cache directory, so nothing is written into site-packages.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from control.errors import MedVisionError

logger = logging.getLogger("medvision.triton")

ModelControl = Literal["none", "explicit"]
LogSink = Callable[[str], None]

_LOG_TAIL_LINES = 60
_REPO_ROOT = Path(__file__).resolve().parents[2]


class TritonStartError(MedVisionError):
    """Triton is not installed, could not start, or did not become ready in time."""

    status_code = 500
    code = "triton_start_failed"


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the ``nvidia-pytriton`` wheel's Triton build live."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path


def find_triton_install() -> TritonInstall:
    """The Triton build inside the installed ``pytriton`` package.

    Raises :class:`TritonStartError` naming the missing piece when the package, the
    ``tritonserver`` binary, the Python backend or the stub for this interpreter is absent.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartError(
            "the nvidia-pytriton package is not installed (pip install nvidia-pytriton)",
            detail={"missing": "pytriton"},
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=package.parent / "nvidia_pytriton.libs",
    )
    for path in (install.binary, install.python_backend / "libtriton_python.so", install.stub):
        if not path.exists():
            raise TritonStartError(
                f"the Triton build in nvidia-pytriton lacks {path}", detail={"missing": str(path)}
            )
    return install


def default_cache_dir() -> Path:
    """``$MEDVISION_DATA_DIR/cache/triton`` when that variable is set, else a per-user temp dir."""
    data_dir = os.environ.get("MEDVISION_DATA_DIR")
    if data_dir:
        return Path(data_dir).resolve() / "cache" / "triton"
    return Path(tempfile.gettempdir()) / f"medvision-triton-{os.getuid()}"


def prepare_backends_dir(install: TritonInstall, cache_dir: Path) -> Path:
    """A backends directory whose ``python/`` holds the backend and this interpreter's stub.

    The directory is keyed by the installed files, reused when present and created
    atomically, so concurrent servers never see a half-built one.
    """
    fingerprint = hashlib.sha256()
    for path in (install.stub, install.python_backend / "libtriton_python.so"):
        stat = path.stat()
        fingerprint.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    target = cache_dir / f"backends-{fingerprint.hexdigest()[:16]}"
    if (target / "python" / "triton_python_backend_stub").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=cache_dir))
    python_dir = staging / "python"
    python_dir.mkdir()
    for entry in install.python_backend.iterdir():
        if entry.is_file():
            (python_dir / entry.name).symlink_to(entry)
    stub = python_dir / "triton_python_backend_stub"
    shutil.copyfile(install.stub, stub)
    stub.chmod(0o755)
    staging.chmod(0o755)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "python" / "triton_python_backend_stub").exists():
            raise
    return target


def server_environment(
    install: TritonInstall, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child environment: Triton's and libpython's libraries, this venv, the repo root.

    ``LD_LIBRARY_PATH`` gets the wheel's ``nvidia_pytriton.libs`` and the interpreter's
    ``lib`` directory (the stub embeds libpython); ``PATH`` and ``VIRTUAL_ENV`` point at the
    running virtual environment; ``PYTHONPATH`` holds the repository root and this venv's
    site-packages, so Python models can import ``control`` and ``training`` helpers and the
    packages installed here. ``OPENBLAS_NUM_THREADS`` is 1 unless the caller set it: the
    Python models' numpy calls are small, and idle OpenBLAS threads spin-wait for the next
    one, which cost ``cxr_postprocess`` ~15 ms of CPU per request on 2 cores (17.5 -> 2.9 ms
    measured with ``bench.triton_cxr``).
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")

    def prepend(name: str, entries: Iterable[str]) -> None:
        parts = [entry for entry in entries if entry]
        parts.extend(part for part in env.get(name, "").split(os.pathsep) if part)
        env[name] = os.pathsep.join(dict.fromkeys(parts))

    libdir = sysconfig.get_config_var("LIBDIR")
    prepend("LD_LIBRARY_PATH", [str(install.libs), str(libdir) if libdir else ""])
    paths = sysconfig.get_paths()
    prepend("PYTHONPATH", [str(_REPO_ROOT), paths["purelib"], paths["platlib"]])
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
        prepend("PATH", [str(Path(sys.prefix) / "bin")])
    return env


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on at the moment of the call."""
    return find_free_ports(1, host)[0]


def find_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing listens on at the moment of the
    call (separate calls to :func:`find_free_port` may return the same port twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_triton_ports(host: str = "127.0.0.1") -> dict[str, int]:
    """Distinct free ports for a server: ``http_port``, ``grpc_port`` and ``metrics_port``."""
    http, grpc, metrics = find_free_ports(3, host)
    return {"http_port": http, "grpc_port": grpc, "metrics_port": metrics}


def _port_in_use(host: str, port: int) -> bool:
    """Whether another socket holds ``port``; connections in TIME_WAIT (left by a server that
    just stopped) do not count, as Triton itself binds with SO_REUSEADDR."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


class TritonServer:
    """One ``tritonserver`` process bound to loopback, serving ``repository``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The server's output
    goes to :attr:`log_path`; with ``forward_log`` it is also copied line by line to the
    ``medvision.triton`` logger (``True``) or to the given callable.
    """

    def __init__(
        self,
        repository: Path,
        *,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        log_verbose: int = 0,
        model_control: ModelControl = "none",
        load_models: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        exit_timeout_s: int = 10,
        extra_args: Sequence[str] = (),
        forward_log: bool | LogSink = False,
        log_path: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.log_verbose = log_verbose
        self.model_control: ModelControl = model_control
        self.load_models = tuple(load_models)
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.extra_args = tuple(extra_args)
        self.cache_dir = cache_dir or default_cache_dir()
        self.log_path = log_path or self.cache_dir / "logs" / f"tritonserver-{grpc_port}.log"
        self._sink: LogSink | None = (
            logger.info if forward_log is True else forward_log if callable(forward_log) else None
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)

    @property
    def url_grpc(self) -> str:
        """``host:port`` of the gRPC endpoint (the form tritonclient expects)."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def url_http(self) -> str:
        """Base URL of the HTTP endpoint."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def url_metrics(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def poll(self) -> int | None:
        """The exit status if the process has ended, else ``None`` (also before start)."""
        return self._process.poll() if self._process else None

    def log_tail(self) -> str:
        """The last lines the server printed."""
        return "".join(self._tail)

    def command(self, backends_dir: Path, binary: Path) -> list[str]:
        """The full ``tritonserver`` command line for this configuration."""
        args = [
            str(binary),
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={backends_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            # Python-backend shared memory names must not collide with other servers on the host.
            f"--backend-config=python,shm-region-prefix-name=medvision_{os.getpid()}_{self.grpc_port}_",
        ]
        args.extend(f"--load-model={name}" for name in self.load_models)
        args.extend(self.extra_args)
        return args

    def start(self) -> None:
        """Spawn the server and return once ``/v2/health/ready`` answers 200.

        Raises :class:`TritonStartError` (with the tail of the server log in ``detail``) when
        Triton is missing, a port is taken, the process exits, or ``startup_timeout_s``
        passes; the process is stopped before raising.
        """
        if self._process is not None:
            raise TritonStartError("this Triton server is already started")
        if not self.repository.is_dir():
            raise TritonStartError(
                f"model repository {self.repository} is not a directory",
                detail={"repository": str(self.repository)},
            )
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if _port_in_use(self.host, port):
                raise TritonStartError(
                    f"port {port} on {self.host} is already in use", detail={"port": port}
                )
        install = find_triton_install()
        backends_dir = prepare_backends_dir(install, self.cache_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._tail.clear()
        command = self.command(backends_dir, install.binary)
        logger.debug("starting %s", " ".join(command))
        self._process = subprocess.Popen(  # noqa: S603 (our own binary and arguments)
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=server_environment(install),
            start_new_session=True,
        )
        _running.add(self)
        assert self._process.stdout is not None
        log_file = self.log_path.open("w", encoding="utf-8")
        self._reader = threading.Thread(
            target=self._copy_log,
            args=(self._process.stdout, log_file),
            name=f"triton-log-{self.grpc_port}",
            daemon=True,
        )
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _copy_log(self, stream: IO[bytes], log_file: IO[str]) -> None:
        with stream, log_file:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                log_file.write(line)
                log_file.flush()
                self._tail.append(line)
                if self._sink is not None:
                    self._sink(line.rstrip("\n"))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.url_http}/v2/health/ready"
        while True:
            status = self.poll()
            if status is not None:
                self._join_reader()
                raise self._start_error(f"tritonserver exited with status {status} during start-up")
            if _answers_ok(url):
                return
            if time.monotonic() > deadline:
                raise self._start_error(
                    f"tritonserver was not ready within {self.startup_timeout_s:g} s"
                )
            time.sleep(0.1)

    def _start_error(self, message: str) -> TritonStartError:
        tail = self.log_tail()
        return TritonStartError(
            f"{message}; log {self.log_path}:\n{tail}",
            detail={"log_path": str(self.log_path), "log_tail": tail},
        )

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None

    def stop(self, timeout_s: float | None = None) -> int | None:
        """Stop the server: SIGTERM, wait (``exit_timeout_s`` + 5 s by default), then SIGKILL.

        Returns the exit status, or ``None`` if it was not running. Safe to call twice.
        """
        process = self._process
        if process is None:
            return None
        wait_s = self.exit_timeout_s + 5.0 if timeout_s is None else timeout_s
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver did not stop in %.0f s; killing it", wait_s)
                process.kill()
                process.wait()
        self._join_reader()
        self._process = None
        _running.discard(self)
        return process.returncode

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


_running: set[TritonServer] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_running):
        server.stop(timeout_s=10)
