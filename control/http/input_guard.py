"""Reject hostile request shapes before routing, parsing or the database sees them.

Two kinds of input reached the database or the parser and answered 500:

* NUL bytes. PostgreSQL text cannot hold U+0000, so a ``%00`` in a query parameter, a
  ``\\u0000`` in a JSON string or a ``%00`` in a URL-encoded form field failed inside the
  driver (and the failed login it belonged to was not audited). No MedVision value has a
  legitimate NUL, so the request is refused as a whole: ``400 nul_byte``.
* Deep nesting. A JSON body nested thousands of levels deep exhausted the decoder's
  recursion. No MedVision body nests beyond a handful of levels, so bodies deeper than
  :data:`MAX_JSON_DEPTH` are refused with ``400 json_too_deep`` from a linear scan that
  does not recurse.

JSON and URL-encoded bodies are small by design: they are buffered up to
:data:`MAX_SMALL_BODY_BYTES` (``413 payload_too_large`` beyond) and replayed to the
application unchanged. Multipart bodies (uploads, masks) are streamed untouched: their
files legitimately hold NUL bytes, and their text fields are checked where they are read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from control.errors import InvalidInputError, MedVisionError, PayloadTooLargeError

__all__ = ["MAX_JSON_DEPTH", "MAX_SMALL_BODY_BYTES", "InputGuardMiddleware", "reject_nul"]

#: Deepest array/object nesting a JSON body may have.
MAX_JSON_DEPTH = 32
#: Largest JSON or URL-encoded body accepted (every such route takes a few fields).
MAX_SMALL_BODY_BYTES = 1024 * 1024

_ENCODED_NUL = re.compile(rb"%00")
_JSON_NUL = re.compile(rb"\\u0000", re.IGNORECASE)
_URLENCODED = b"application/x-www-form-urlencoded"

#: Called with the request's scope and the refusal when the guard refuses a request to a
#: path that must leave a trace of every attempt (the token endpoint: a failed login).
RefusalHook = Callable[[Scope, MedVisionError], Awaitable[None]]


def reject_nul(value: str, field: str) -> None:
    """Raise ``400 nul_byte`` when ``value`` holds a NUL character (PostgreSQL text cannot)."""
    if "\x00" in value:
        raise _nul_error(field)


def _nul_error(where: str) -> InvalidInputError:
    return InvalidInputError(
        f"NUL characters are not allowed in {where}", code="nul_byte", detail={"where": where}
    )


def _json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body``'s array/object nesting goes deeper than ``limit`` (strings skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower()
    return b""


def _is_json(content_type: bytes) -> bool:
    return content_type == b"application/json" or content_type.endswith(b"+json")


class InputGuardMiddleware:
    """ASGI middleware enforcing the checks in this module's docstring.

    ``on_refused`` maps exact paths to a hook awaited before a refusal of the guard's own is
    answered (errors of the application behind it do not reach the hook).
    """

    def __init__(self, app: ASGIApp, on_refused: Mapping[str, RefusalHook] | None = None) -> None:
        self.app = app
        self.on_refused = dict(on_refused or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        try:
            checked = await _checked(scope, receive)
        except MedVisionError as exc:
            hook = self.on_refused.get(scope.get("path", ""))
            if hook is not None and not isinstance(exc, _Disconnected):
                await hook(scope, exc)
            raise
        await self.app(scope, checked, send)


async def _checked(scope: Scope, receive: Receive) -> Receive:
    """The request's ``receive`` (replaying a buffered body) once every check has passed."""
    query = bytes(scope.get("query_string", b""))
    if b"\x00" in query or _ENCODED_NUL.search(query):
        raise _nul_error("query parameters")
    if "\x00" in scope.get("path", ""):
        raise _nul_error("the path")
    content_type = _content_type(scope)
    if not (_is_json(content_type) or content_type == _URLENCODED):
        return receive
    body = await _read_body(receive)
    if _is_json(content_type):
        if _JSON_NUL.search(body) or b"\x00" in body:
            raise _nul_error("the JSON body")
        if _json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise InvalidInputError(
                f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels",
                code="json_too_deep",
            )
    elif b"\x00" in body or _ENCODED_NUL.search(body):
        raise _nul_error("form fields")
    return _replay(body, receive)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected("the client disconnected")
        chunk = message["body"] if message["type"] == "http.request" else b""
        size += len(chunk)
        if size > MAX_SMALL_BODY_BYTES:
            raise PayloadTooLargeError(
                f"JSON and form bodies are limited to {MAX_SMALL_BODY_BYTES} bytes",
                code="body_too_large",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(MedVisionError):
    """The client went away while its body was being read."""

    status_code = 400
    code = "client_disconnected"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the original channel."""
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            event: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return event
        return await receive()

    return replay
