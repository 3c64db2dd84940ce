"""The running MedVision stack for end-to-end benchmarks: Triton, ``medvision serve``, workers.

:class:`Stack` starts a ``tritonserver`` on free loopback ports serving the ``cxr`` ensemble,
creates an admin with ``medvision users create``, starts ``medvision serve`` (its in-process
job worker on) and optionally extra ``medvision worker`` processes, all as subprocesses with
a private data directory; closing it (or Ctrl-C / SIGTERM) stops every process it started.

The model repository is, in order: ``--repository`` when given; the committed
``model_repository/`` when it holds an exported ``cxr_net`` (``medvision export demo``);
else the tiny untrained networks of ``tests/fixtures/triton_repo.py`` built into the
temporary directory. :attr:`Stack.repository_note` says which.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``python bench/x.py`` as well as ``python -m bench.x``
    sys.path.insert(0, str(ROOT))

REPOSITORY = ROOT / "model_repository"
CXR_MODELS = ("cxr_preprocess", "cxr_net", "cxr_postprocess", "cxr")
CXR_OUTPUTS = ["PROBABILITIES", "POSITIVE", "CAM"]
ADMIN = "bench"
PG_ADMIN_URL = os.environ.get("MEDVISION_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear interpolation between ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95 and max of ``seconds``, in milliseconds (rounded to 0.1)."""
    return {
        "median_ms": round(1e3 * statistics.median(seconds), 1),
        "p95_ms": round(1e3 * percentile(seconds, 95), 1),
        "max_ms": round(1e3 * max(seconds), 1),
    }


def epoch_seconds(value: datetime) -> float:
    """A database timestamp (UTC, aware or naive) as seconds since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def has_cxr_network(repository: Path) -> bool:
    """Whether ``repository/cxr_net`` holds a config and an exported version."""
    from export.demo import has_network

    return has_network(repository, "cxr_net")


def choose_repository(explicit: Path | None, scratch: Path) -> tuple[Path, str]:
    """The repository to serve and a one-line note saying what it holds."""
    if explicit is not None:
        return explicit.resolve(), f"{explicit} (given)"
    if has_cxr_network(REPOSITORY):
        from export.repository import sync_pre_post_configs

        # A checkout resets the pre/post configs to placeholders; `make run` re-syncs them too.
        sync_pre_post_configs(REPOSITORY, "cxr")
        return REPOSITORY, "committed model_repository/ (exported cxr_net)"
    from tests.fixtures.triton_repo import build_tiny_repository

    print(
        "model_repository/ has no exported cxr_net: building the tiny test networks ...", flush=True
    )
    repository = build_tiny_repository(scratch / "model_repository")
    return repository, (
        "TINY untrained test networks (tests/fixtures/triton_repo.py, cxr_net input 64²) in a "
        "temp dir: model_repository/ has no exported cxr_net (run `medvision export demo`)"
    )


def model_config(repository: Path, model: str) -> Any:
    """``repository/model/config.pbtxt`` parsed as Triton's ``ModelConfig``."""
    from export.triton_config import parse_config

    return parse_config((repository / model / "config.pbtxt").read_text())


def model_parameters(repository: Path, model: str) -> dict[str, str]:
    """The ``parameters`` map of ``repository/model/config.pbtxt``."""
    from export.triton_config import config_parameters

    return config_parameters(model_config(repository, model))


def describe_cxr(repository: Path) -> str:
    """The served CXR network in a few words (version, input size, instance counts)."""
    from export.triton_config import config_parameters

    configs = {
        model: model_config(repository, model)
        for model in ("cxr_preprocess", "cxr_net", "cxr_postprocess")
    }
    net = config_parameters(configs["cxr_net"])
    pre = config_parameters(configs["cxr_preprocess"])
    counts = [
        str(sum(group.count or 1 for group in config.instance_group) or 1)
        for config in configs.values()
    ]
    return (
        f"cxr_net {net.get('model_version') or 'unversioned'}"
        f"{' (synthetic)' if net.get('synthetic_data') == 'true' else ''}, "
        f"input {pre.get('input_size', '?')}², instances pre/net/post {'/'.join(counts)}"
    )


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process (its own session), wait, then SIGKILL; only this process id."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the child processes."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@dataclass
class Stack:
    """Triton + ``medvision serve`` (+ ``extra_workers`` ``medvision worker``) for one run."""

    scratch: Path
    repository_arg: Path | None = None
    database_url: str | None = None
    extra_workers: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    repository: Path = field(init=False)
    repository_note: str = field(init=False)
    triton_url: str = field(init=False)
    base_url: str = field(init=False)
    data_dir: Path = field(init=False)
    token: str = field(init=False)
    _triton: Any = field(init=False, default=None)
    _processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    _password: str = field(init=False, default_factory=lambda: secrets.token_urlsafe(18))

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Stack:
        _raise_on_sigterm()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Repository, Triton, admin account, ``serve`` (ready), extra workers, a token."""
        from control.triton.server import TritonServer, find_free_port, free_triton_ports

        self.data_dir = self.scratch / "var"
        self.repository, self.repository_note = choose_repository(self.repository_arg, self.scratch)
        ports = free_triton_ports()
        print("starting Triton ...", flush=True)
        self._triton = TritonServer(
            self.repository,
            **ports,
            model_control="explicit",
            load_models=CXR_MODELS,
            cache_dir=self.scratch / "triton",
            startup_timeout_s=300,
        )
        self._triton.start()
        self.triton_url = self._triton.url_grpc

        created = subprocess.run(  # noqa: S603 (our own CLI)
            [*self.command(), "users", "create", "--role", "admin", "--username", ADMIN],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if created.returncode != 0:
            raise RuntimeError(f"users create failed:\n{created.stdout}{created.stderr}")

        port = find_free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        print("starting medvision serve ...", flush=True)
        self._spawn(["serve", "--port", str(port)], "serve")
        self._wait_healthy()
        for index in range(self.extra_workers):
            self._spawn(["worker"], f"worker-{index + 1}")
        self.token = self.new_token()

    def close(self) -> None:
        """Stop the workers, ``serve`` and Triton (each by its own process id)."""
        for process in reversed(self._processes):
            _terminate(process)
        self._processes.clear()
        if self._triton is not None:
            self._triton.stop()
            self._triton = None

    # ------------------------------------------------------------------ processes

    @staticmethod
    def command() -> list[str]:
        """How to run ``medvision`` with this interpreter."""
        return [sys.executable, "-m", "control.cli.main"]

    def env(self) -> dict[str, str]:
        """The child environment: inherited ``MEDVISION_*`` dropped, the bench's own set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVISION_")}
        env.update(
            MEDVISION_DATA_DIR=str(self.data_dir),
            MEDVISION_TRITON_URL=self.triton_url,
            MEDVISION_LOG_LEVEL="WARNING",
            MEDVISION_PASSWORD=self._password,
            MEDVISION_SECRET_KEY="bench-secret-" + "k" * 40,
            MEDVISION_ACCESS_TOKEN_TTL_S="7200",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        if self.database_url:
            env["MEDVISION_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def _spawn(self, args: list[str], name: str) -> None:
        log = (self.scratch / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 (our own CLI)
            [*self.command(), *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.scratch,
        )
        log.close()
        self._processes.append(process)

    @property
    def serve_pid(self) -> int:
        """The process id of ``medvision serve`` (the first process the stack started)."""
        return self._processes[0].pid

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a child process printed."""
        path = self.scratch / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise if a child process has exited."""
        names = ["serve", *(f"worker-{i + 1}" for i in range(self.extra_workers))]
        for process, name in zip(self._processes, names, strict=False):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )
        if self._triton is not None and self._triton.poll() is not None:
            raise RuntimeError(f"tritonserver exited:\n{self._triton.log_tail()}")

    def _wait_healthy(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"serve not healthy in {timeout_s:g} s:\n{self.log_tail('serve')}"
                    )
                time.sleep(0.2)

    def new_token(self) -> str:
        """An access token for the bench admin (password grant)."""
        import httpx

        response = httpx.post(
            f"{self.base_url}/api/auth/token",
            data={"grant_type": "password", "username": ADMIN, "password": self._password},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # ------------------------------------------------------------------ database

    def settings(self) -> Any:
        from control.config import Settings

        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    @contextlib.contextmanager
    def database(self) -> Iterator[Any]:
        """A synchronous SQLAlchemy engine on the stack's database (read-only use)."""
        from sqlalchemy import create_engine

        from control.db.engine import sync_url

        engine = create_engine(sync_url(self.settings()))
        try:
            yield engine
        finally:
            engine.dispose()


def upload_case(http: Any, headers: dict[str, str], payload: bytes, name: str) -> uuid.UUID:
    """POST one DICOM file to ``/api/studies``; the single case id it created."""
    response = http.post(
        "/api/studies", files={"files": (name, payload, "application/dicom")}, headers=headers
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:400]}")
    case_ids = response.json()["case_ids"]
    if len(case_ids) != 1:
        raise RuntimeError(f"expected one case, got {case_ids}")
    return uuid.UUID(case_ids[0])


@contextlib.contextmanager
def throwaway_postgres(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new empty PostgreSQL database (dropped afterwards); yields its URL."""
    import psycopg

    name = f"medvision_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_line(before: tuple[float, float, float]) -> str:
    """The 1-minute load average before and now, for the figures table."""
    now = os.getloadavg()
    return f"{before[0]:.2f} before, {now[0]:.2f} after (1-min; 5-min {now[1]:.2f})"
