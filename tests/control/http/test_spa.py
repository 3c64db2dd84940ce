"""The workstation served at ``/``: files, content types, caching, the index.html fallback for
client-side routes, the API's own 404s, path traversal and the not-built answer."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.config import Settings
from control.http.spa import resolve_file
from tests.control.http.conftest import INDEX_HTML, SECRET_TEXT, ui_settings

IMMUTABLE = "public, max-age=31536000, immutable"

ASSETS = [
    ("/assets/index-abc.js", "text/javascript; charset=utf-8"),
    ("/assets/worker-def.mjs", "text/javascript; charset=utf-8"),
    ("/assets/index-abc.css", "text/css; charset=utf-8"),
    ("/assets/codec-123.wasm", "application/wasm"),
]


def _is_index(response) -> bool:
    return response.status_code == 200 and response.text.startswith(INDEX_HTML)


async def test_root_is_index_html_revalidated_on_every_load(ui_client):
    response = await ui_client.get("/")
    assert _is_index(response), response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/cases/123", "/worklist?status=review", "/cases/1/viewer/x"])
async def test_client_side_routes_get_index_html(ui_client, path):
    response = await ui_client.get(path)
    assert _is_index(response), response.text
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/", "/cases/123", "/assets/index-abc.js"])
async def test_head_answers_like_get_without_a_body(ui_client, path):
    """Uptime checks and proxies probe with HEAD (it answered 405)."""
    get_response = await ui_client.get(path)
    head_response = await ui_client.head(path)
    assert head_response.status_code == 200
    for header in ("content-type", "cache-control", "content-length"):
        assert head_response.headers[header] == get_response.headers[header], header
    assert head_response.content == b""


@pytest.mark.parametrize(("path", "content_type"), ASSETS)
async def test_hashed_assets_have_their_type_and_are_cached_forever(ui_client, path, content_type):
    response = await ui_client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == IMMUTABLE


async def test_unhashed_files_are_served_and_revalidated(ui_client, web_dir):
    response = await ui_client.get("/favicon.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == (web_dir / "favicon.svg").read_bytes()


async def test_a_missing_hashed_asset_is_404_not_index_html(ui_client):
    response = await ui_client.get("/assets/index-old.js")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/cases/not-a-uuid/anything",
        f"/api/cases/{uuid.uuid4()}/unknown",
        "/api",
        "/dicomweb/no-such-resource",
        "/metrics/no-such-page",
        "/health/deep",
    ],
)
async def test_server_paths_never_fall_back_to_the_ui(ui_client, path):
    response = await ui_client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == "not_found"


async def test_unknown_schema_pages_are_litestars_404(ui_client):
    response = await ui_client.get("/schema/nothing-here")
    assert response.status_code == 404
    assert not _is_index(response)


async def test_api_routes_stay_protected_beside_the_public_ui(ui_client):
    response = await ui_client.get("/api/cases")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "path",
    [
        "/..%2fsecret.txt",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/%2f%2e%2e%2fsecret.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/leak.txt",
        "/assets/outside/secret.txt",
        "/assets/%2e%2e/index.html",
        "/a%00b",
    ],
)
async def test_paths_never_escape_the_web_directory(ui_client, path):
    response = await ui_client.get(path)
    assert SECRET_TEXT not in response.text
    assert "root:" not in response.text
    # 400: the input guard refuses a NUL byte in the path before routing (nul_byte).
    assert response.status_code in (400, 404) or _is_index(response), (response.status_code, path)
    assert response.headers.get("cache-control") != IMMUTABLE


@pytest.mark.parametrize(
    "relative",
    [
        "../secret.txt",
        "assets/../../secret.txt",
        "assets/../index.html",
        "leak.txt",
        "assets/outside/secret.txt",
        "a\0b",
        "x" * 5000,
        "assets",
        "",
    ],
)
def test_resolve_file_refuses_anything_but_a_file_inside(web_dir, relative):
    assert resolve_file(web_dir, relative) is None


def test_resolve_file_refuses_absolute_paths_outside(web_dir):
    secret = web_dir.parent / "secret.txt"
    assert resolve_file(web_dir, str(secret)) is None
    assert resolve_file(web_dir, "/etc/passwd") is None


def test_resolve_file_finds_files_inside(web_dir):
    assert resolve_file(web_dir, "assets/index-abc.js") == (web_dir / "assets/index-abc.js")
    assert resolve_file(web_dir, "/index.html") == web_dir / "index.html"


@pytest.mark.parametrize("missing", ["directory", "index"])
async def test_ui_not_built_answers_503_telling_how_to_build(tmp_path: Path, web_dir, missing):
    if missing == "directory":
        web_dir = tmp_path / "nowhere"
    else:
        (web_dir / "index.html").unlink()
    async with AsyncTestClient(app=create_app(ui_settings(tmp_path, web_dir))) as client:
        for path in ("/", "/cases/123"):
            response = await client.get(path)
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "ui_not_built"
            assert "make web" in response.json()["message"]
        assert (await client.get("/health")).status_code == 200


async def test_the_ui_is_not_in_the_openapi_document(ui_client):
    schema = (await ui_client.get("/schema/openapi.json")).json()
    assert all(
        path.startswith(("/api/", "/dicomweb/")) or path in {"/health", "/ready"}
        for path in schema["paths"]
    )
    assert "/api/cases/{case_id}/instances/{instance_id}/file" in schema["paths"]


def test_web_dir_defaults_to_web_dist_and_is_configurable(monkeypatch, tmp_path: Path):
    import control

    repo = Path(control.__file__).resolve().parent.parent
    monkeypatch.delenv("MEDVISION_WEB_DIR", raising=False)
    assert Settings().web_dir == repo / "web" / "dist"
    monkeypatch.setenv("MEDVISION_WEB_DIR", str(tmp_path))
    assert Settings().web_dir == tmp_path
