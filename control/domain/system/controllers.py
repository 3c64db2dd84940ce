"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging
import time

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text

from control import __version__

logger = logging.getLogger("medvision.ready")


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
        elif check == "triton":
            from control.triton.client import TritonClient

            async with TritonClient(
                state.settings.triton_url, timeout_s=2.0, retries=0, use_shared_memory=False
            ) as client:
                if not await client.is_ready():
                    return CheckOut(False, "not ready")
    except Exception as exc:
        # /ready is public: the driver's message (hosts, ports, user names, paths) goes to
        # the server log only; the caller learns which check failed and the kind of failure.
        logger.warning("readiness check %s failed: %s: %s", check, type(exc).__name__, exc)
        return CheckOut(False, _failure_kind(exc))
    return CheckOut(True, None, round((time.perf_counter() - started) * 1000, 2))


def _failure_kind(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError | OSError):
        return "unreachable"
    return "unavailable"


@get("/ready", operation_id="ready", tags=["system"], security=[])
async def ready(state: State) -> Response[ReadyOut]:
    """Whether the database, the object store and Triton answer; 503 when one does not.

    With MEDVISION_TRITON_REQUIRED=false, Triton is reported but does not gate readiness.
    """
    checks = {name: await _timed(name, state) for name in ("database", "storage", "triton")}
    required = ["database", "storage"] + (["triton"] if state.settings.triton_required else [])
    ok = all(checks[name].ok for name in required)
    return Response(ReadyOut(ok, checks), status_code=200 if ok else 503)
