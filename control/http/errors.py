"""Every error answer is JSON with a machine-readable ``code``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.orm.exc import StaleDataError

from control.errors import MedVisionError
from control.http.logging import ensure_request_id

log = structlog.get_logger("medvision.errors")

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media",
    429: "rate_limited",
    503: "unavailable",
}


def _respond(request: Request[Any, Any, Any], status: int, body: dict[str, Any]) -> Response[Any]:
    body.setdefault("request_id", ensure_request_id(request.scope))
    headers = {"WWW-Authenticate": 'Bearer realm="medvision"'} if status == 401 else None
    return Response(body, status_code=status, headers=headers)


def medvision_error(request: Request[Any, Any, Any], exc: MedVisionError) -> Response[Any]:
    """Our own errors carry their code and status."""
    return _respond(request, exc.status_code, exc.to_dict())


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Malformed bodies, unknown fields and bad parameters."""
    extra = exc.extra if isinstance(exc.extra, list | dict) else None
    body: dict[str, Any] = {"code": "validation_failed", "message": exc.detail}
    if extra:
        body["detail"] = {"errors": extra}
    return _respond(request, 400, body)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Framework errors (404, 405, 413, malformed multipart, ...) mapped to codes."""
    status = exc.status_code
    code = _CODES_BY_STATUS.get(status, "http_error")
    message = exc.detail or HTTPStatus(status).phrase
    if status == 400 and "multipart" in message.lower():
        code = "malformed_form"
    return _respond(request, status, {"code": code, "message": message})


def stale_data(request: Request[Any, Any, Any], _exc: StaleDataError) -> Response[Any]:
    """Two writers changed the same row at once; the later one loses."""
    return _respond(
        request,
        409,
        {"code": "concurrent_update", "message": "someone else changed this; reload and retry"},
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Anything unexpected: logged with the request id, answered without internals."""
    log.exception("unhandled_error", error_type=type(exc).__name__, path=request.url.path)
    return _respond(request, 500, {"code": "internal_error", "message": "internal server error"})


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    MedVisionError: medvision_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    StaleDataError: stale_data,
    Exception: internal_error,
}
