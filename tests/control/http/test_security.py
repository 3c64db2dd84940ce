"""Security headers: the strict CSP on the workstation's HTML, nosniff / no referrer / no
framing everywhere, Cache-Control on API data; Swagger UI served from this server under a
CSP of its own; HSTS when configured; /ready without driver details; private files."""

from __future__ import annotations

import re
import stat

import pytest
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.http.security import CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def _assert_always(response) -> None:
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, (name, response.headers)


def test_csp_allows_no_inline_or_eval_script_and_no_framing() -> None:
    policy = _directives(CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    assert policy["worker-src"] == ["'self'", "blob:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    every_source = [source for values in policy.values() for source in values]
    assert "'unsafe-eval'" not in every_source
    assert "*" not in every_source
    assert not any(source.startswith(("http:", "https:")) for source in every_source)


@pytest.mark.parametrize("path", ["/", "/cases/123"])
async def test_workstation_html_carries_the_strict_csp(ui_client, path):
    response = await ui_client.get(path)
    assert response.status_code == 200
    _assert_always(response)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    script_src = _directives(response.headers["content-security-policy"])["script-src"]
    assert "'unsafe-inline'" not in script_src


async def test_assets_are_not_sniffed(ui_client):
    response = await ui_client.get("/assets/index-abc.js")
    assert response.status_code == 200
    _assert_always(response)
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_swagger_ui_loads_nothing_from_elsewhere(ui_client, path):
    response = await ui_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    _assert_always(response)
    policy = _directives(response.headers["content-security-policy"])
    assert response.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    # Every script, style sheet and icon the page names is on this server, and is served.
    html = response.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html[:2000]
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls), urls
    for url in urls:
        asset = await ui_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


async def test_hsts_is_sent_only_when_configured(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert "strict-transport-security" not in (await client.get("/health")).headers
    behind_tls = settings.model_copy(update={"hsts_max_age_s": 31_536_000})
    async with AsyncTestClient(app=create_app(behind_tls)) as client:
        for path in ("/health", "/api/cases", "/schema"):
            response = await client.get(path)
            assert response.headers["strict-transport-security"] == (
                "max-age=31536000; includeSubDomains"
            ), path


async def test_ready_names_no_host_port_or_driver_message(settings):
    unreachable = settings.model_copy(
        update={
            "s3_endpoint": "127.0.0.1:9",
            "s3_access_key": "medvision-test",
            "s3_secret_key": "medvision-test-secret",
            "triton_url": "127.0.0.1:9",
        }
    )
    async with AsyncTestClient(app=create_app(unreachable)) as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["storage"]["ok"] is False and checks["triton"]["ok"] is False
    for name, check in checks.items():
        detail = check["detail"] or ""
        assert "127.0.0.1" not in detail and ":9" not in detail, (name, detail)
        assert detail in ("", "unreachable", "timed out", "unavailable", "not ready"), detail


async def test_sqlite_database_and_secret_key_are_private(tmp_path):
    from control.config import Settings

    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=None,  # the embedded default, whatever the environment says
        worker_enabled=False,
        triton_required=False,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health")).status_code == 200
    files = [tmp_path / "var" / "medvision.db", tmp_path / "var" / "secret_key"]
    files += [path for path in (tmp_path / "var").glob("medvision.db-*")]
    for path in files:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("path", ["/api/cases", "/api/studies/x", "/api/nope"])
async def test_api_json_is_never_stored(ui_client, path):
    response = await ui_client.get(path)
    assert response.status_code in (401, 404)
    _assert_always(response)
    assert response.headers["cache-control"] == "private, no-store"


async def test_probes_get_the_headers_too(ui_client):
    response = await ui_client.get("/health")
    assert response.status_code == 200
    _assert_always(response)
