"""The radiologist workstation (a single-page app built into MEDVISION_WEB_DIR) served at ``/``.

Same origin as the API, so the app needs no CORS and its strict Content-Security-Policy can
say ``'self'``. A path names a file under the web directory, or is a client-side route
(``/cases/123``) and gets ``index.html``. Paths under the server's own prefixes never fall
back: an unknown ``/api/...`` path answers the API's JSON 404.

Litestar's ``create_static_files_router(html_mode=True)`` was not enough: it answers a missing
file with ``404.html`` instead of ``index.html``, gives every file the same Cache-Control, and
its containment check normalises the path without resolving symlinks, so a link in the
directory could lead out of it. This handler resolves every path fully before serving it.

The directory is looked at on each request, so ``make web`` on a running server takes effect
at once; without ``index.html`` the UI answers 503 ``ui_not_built``.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from litestar import HttpMethod, route
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.response import File

from control.errors import UINotBuiltError

#: The server's own path prefixes: never a file of the UI, never answered with index.html.
RESERVED_PREFIXES = ("/api", "/schema", "/health", "/ready", "/metrics", "/dicomweb")

#: Vite puts content-hashed bundles here: a changed file gets a new name, so cache forever.
HASHED_ASSETS_DIR = "assets"
IMMUTABLE = "public, max-age=31536000, immutable"
#: index.html (and unhashed files such as the favicon): reuse only after asking the server,
#: so a new build is picked up on the next load.
REVALIDATE = "no-cache"

#: Content types that must be exact whatever the host's mime.types says: browsers compile
#: WebAssembly streaming only as application/wasm and run module workers only with a
#: JavaScript type (X-Content-Type-Options: nosniff forbids guessing). Litestar adds
#: ``; charset=utf-8`` to the text types.
MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain",
    ".webmanifest": "application/manifest+json",
}


def is_reserved(path: str) -> bool:
    """Whether ``path`` belongs to the server (API, schema, probes, metrics, DICOMweb)."""
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in RESERVED_PREFIXES)


def media_type_of(path: Path) -> str:
    """The Content-Type to send ``path`` with (``application/octet-stream`` when unknown)."""
    suffix = path.suffix.lower()
    if suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def resolve_file(web_dir: Path, relative: str) -> Path | None:
    """The regular file ``relative`` names inside ``web_dir``, fully resolved, or None.

    Never a path outside ``web_dir``: paths with ``..`` segments give None, and so do
    absolute paths and symlinks that lead out (checked after resolving), and names the file
    system rejects (NUL bytes, over-long names).
    """
    if ".." in PurePosixPath(relative).parts:
        return None
    try:
        root = web_dir.resolve(strict=True)
        candidate = (root / relative.lstrip("/")).resolve(strict=True)
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def _file(path: Path, cache_control: str) -> File:
    return File(
        path,
        media_type=media_type_of(path),
        content_disposition_type="inline",
        headers={"Cache-Control": cache_control},
    )


def workstation_handler(web_dir: Path) -> HTTPRouteHandler:
    """The GET (and HEAD) handler for ``/`` and every path under it that no other route claims.

    Public (the SPA logs in itself through ``/api/auth/token``) and left out of the OpenAPI
    document.
    """

    @route(
        ["/", "/{file_path:path}"],
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        name="workstation",
        include_in_schema=False,
        opt={"exclude_from_auth": True},
    )
    async def workstation(file_path: Path | None = None) -> File:
        """A file of the built UI, or its index.html for a client-side route."""
        relative = file_path.as_posix() if file_path is not None else "/"
        path = "/" + relative.lstrip("/")
        if is_reserved(path):
            raise NotFoundException()
        hashed = path.startswith(f"/{HASHED_ASSETS_DIR}/")
        found = resolve_file(web_dir, relative) if relative.strip("/") else None
        if found is not None:
            return _file(found, IMMUTABLE if hashed else REVALIDATE)
        if hashed:
            # A missing hashed bundle is a stale page after a deploy: index.html in its place
            # would only fail later as a script that is HTML.
            raise NotFoundException()
        index = resolve_file(web_dir, "index.html")
        if index is None:
            raise UINotBuiltError(
                "the web workstation is not built (no index.html in MEDVISION_WEB_DIR): "
                "run `make web`"
            )
        return _file(index, REVALIDATE)

    return workstation
