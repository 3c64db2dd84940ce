"""Security headers on every response, and Cache-Control on patient and account data."""

from __future__ import annotations

from litestar.types import BeforeMessageSendHookHandler, Message, Scope

#: The workstation's policy: only its own origin, no inline scripts, no plugins, no framing.
#: Each relaxation of a plain ``'self'`` policy, and why:
#: - script-src 'wasm-unsafe-eval': the DICOM image loader decodes JPEG 2000 / JPEG-LS /
#:   HTJ2K with WebAssembly codecs, which browsers compile only with this keyword (it allows
#:   WebAssembly compilation, not eval of JavaScript).
#: - worker-src blob:: the image loader and NiiVue start Web Workers, some from blob: URLs.
#: - style-src 'unsafe-inline': React's ``style`` props and NiiVue set style attributes;
#:   styles cannot run code. Scripts stay 'self' only: no inline script, no eval.
#: - img-src data: blob:: rendered canvases and overlays are shown through data:/blob: URLs.
#: - font-src data:: fonts inlined into the CSS bundle.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: The API documentation pages (/schema): Swagger UI's files come from this server, but
#: Litestar inlines the page's bootstrap script (with the document), hence 'unsafe-inline'
#: for scripts on these pages only; they hold no patient data and load nothing from elsewhere.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: Sent with every response.
ALWAYS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}

#: Paths whose responses carry patient images, case data or account data.
PRIVATE_PREFIXES = ("/api/", "/dicomweb/")
#: JSON (worklists, cases, findings, tokens, errors) is never stored by any cache.
PRIVATE_JSON = b"private, no-store"
#: Images and DICOM (PNG frames, DICOM files and JSON headers, NIfTI volumes) may be kept by
#: the browser alone (never by a shared cache) and are checked with the server before reuse.
PRIVATE_BODY = b"private, max-age=0, must-revalidate"

_SCHEMA_PREFIX = "/schema"


def _is_schema(path: str) -> bool:
    return path == _SCHEMA_PREFIX or path.startswith(f"{_SCHEMA_PREFIX}/")


async def add_security_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: nosniff, no referrer and no framing on every response; a CSP on
    every HTML page (the API documentation's own); on API responses without their own Cache-Control,
    ``private, no-store`` for JSON and ``private, max-age=0, must-revalidate`` otherwise."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(name).lower(): bytes(value) for name, value in headers}
    added = [(name, value) for name, value in ALWAYS.items() if name not in present]
    path = scope.get("path", "")
    content_type = present.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type == b"text/html" and b"content-security-policy" not in present:
        policy = DOCS_CONTENT_SECURITY_POLICY if _is_schema(path) else CONTENT_SECURITY_POLICY
        added.append((b"content-security-policy", policy.encode()))
    if path.startswith(PRIVATE_PREFIXES) and b"cache-control" not in present:
        is_json = content_type == b"application/json"
        added.append((b"cache-control", PRIVATE_JSON if is_json else PRIVATE_BODY))
    message["headers"] = headers + added


def strict_transport_security(max_age_s: int) -> BeforeMessageSendHookHandler:
    """A ``before_send`` hook adding ``Strict-Transport-Security`` (with subdomains) to every
    response; for deployments where every client reaches MedVision over TLS."""
    value = f"max-age={max_age_s}; includeSubDomains".encode()

    async def add_hsts(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                (b"strict-transport-security", value),
            ]

    return add_hsts
