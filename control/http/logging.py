"""Structured JSON logs with a request id on every line of a request."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def configure_logging(level: str = "INFO", json_output: bool = True) -> None:
    """Route stdlib and structlog records through one JSON (or console) renderer on stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "aiosqlite", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def ensure_request_id(scope: Scope) -> str:
    """This request's id, always made here (32 hex digits).

    The id goes into audit entries and error bodies, so a caller must not choose it: an
    unauthenticated client could otherwise make its requests look like someone else's or
    plant text in the audit log. What the client sent as ``X-Request-ID`` is kept apart
    (``client_request_id``) for correlating with its own logs.
    """
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = uuid.uuid4().hex
    return str(state["request_id"])


def client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` when it is 1-64 of ``[A-Za-z0-9._-]``, else None."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-request-id":
            incoming = value.decode("latin-1")
            return incoming if _VALID_REQUEST_ID.fullmatch(incoming) else None
    return None


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every HTTP response, 404s and 405s included, carries its id."""
    if message["type"] == "http.response.start":
        headers = [
            *message.get("headers", []),
            (b"x-request-id", ensure_request_id(scope).encode()),
        ]
        message["headers"] = headers


class RequestIdMiddleware:
    """Binds the request id to the log context and logs one access line per routed request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("medvision.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=ensure_request_id(scope))
        if (client_id := client_request_id(scope)) is not None:
            structlog.contextvars.bind_contextvars(client_request_id=client_id)
        started = time.perf_counter()
        status = 500

        async def capture_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture_status)
        finally:
            self.log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
