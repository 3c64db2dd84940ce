"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import time

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text

from control import __version__


class HealthOut(msgspec.Struct):
    status: str
    version: str


class CheckOut(msgspec.Struct):
    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class ReadyOut(msgspec.Struct):
    ready: bool
    checks: dict[str, CheckOut]


@get("/health", operation_id="health", tags=["system"], security=[])
async def health() -> HealthOut:
    """The process is up."""
    return HealthOut("ok", __version__)


async def _timed(check: str, state: State) -> CheckOut:
    started = time.perf_counter()
    try:
        if check == "database":
            async with state.session_factory() as session:
                await session.execute(text("SELECT 1"))
        elif check == "storage":
            await state.store.ping()
    except Exception as exc:
        return CheckOut(False, f"{type(exc).__name__}: {exc}"[:300])
    return CheckOut(True, None, round((time.perf_counter() - started) * 1000, 2))


@get("/ready", operation_id="ready", tags=["system"], security=[])
async def ready(state: State) -> Response[ReadyOut]:
    """Whether the database and the object store answer; 503 when one does not."""
    checks = {name: await _timed(name, state) for name in ("database", "storage")}
    ok = all(check.ok for check in checks.values())
    return Response(ReadyOut(ok, checks), status_code=200 if ok else 503)
