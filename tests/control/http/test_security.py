"""Security headers: the strict CSP on the workstation's HTML, nosniff / no referrer / no
framing everywhere, Cache-Control on API data; Swagger UI keeps working without the CSP."""

from __future__ import annotations

import pytest

from control.http.security import CONTENT_SECURITY_POLICY

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


async def test_swagger_ui_gets_no_csp_but_the_other_headers(ui_client):
    response = await ui_client.get("/schema/swagger")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    _assert_always(response)
    assert "content-security-policy" not in response.headers


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
