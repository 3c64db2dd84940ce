"""Authorization matrix: every guarded route by every role, no token and forged/bad tokens.

``EXPECTED`` is the security spec, written out by hand. The test enumerates the app's routes
itself, so a route added without a guard, or without a row here, fails the suite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from litestar import Litestar, get
from litestar.routes import HTTPRoute

from control.db.models import Role
from control.domain.auth.guards import requires
from control.domain.auth.tokens import ISSUER, TokenCodec
from tests.conftest import SECRET

ADMIN, RADIOLOGIST, INTEGRATION, MLOPS = "admin", "radiologist", "integration", "mlops"
ALL_ROLES = frozenset({ADMIN, RADIOLOGIST, INTEGRATION, MLOPS})
ACCOUNT_OF_ROLE = {ADMIN: "admin1", RADIOLOGIST: "rad1", INTEGRATION: "pacs1", MLOPS: "mlops1"}

# (method, path template) -> roles allowed. The security spec: change it deliberately.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/auth/revoke"): ALL_ROLES,
    ("GET", "/api/users/me"): ALL_ROLES,
    ("GET", "/api/users"): frozenset({ADMIN}),
    ("POST", "/api/users"): frozenset({ADMIN}),
    ("GET", "/api/users/{user_id:uuid}"): frozenset({ADMIN}),
    ("PATCH", "/api/users/{user_id:uuid}"): frozenset({ADMIN}),
    ("POST", "/api/studies"): frozenset({ADMIN, INTEGRATION, RADIOLOGIST}),
    ("GET", "/api/studies/{study_id:uuid}"): frozenset({ADMIN, RADIOLOGIST, INTEGRATION}),
    ("PATCH", "/api/studies/{study_id:uuid}/demographics"): frozenset({ADMIN, INTEGRATION}),
    ("GET", "/api/studies/{study_id:uuid}/link"): frozenset({ADMIN, INTEGRATION}),
    ("GET", "/api/cases"): frozenset({ADMIN, RADIOLOGIST}),
    ("GET", "/api/cases/{case_id:uuid}"): frozenset({ADMIN, RADIOLOGIST}),
    ("PATCH", "/api/cases/{case_id:uuid}"): frozenset({ADMIN}),
    ("POST", "/api/cases/{case_id:uuid}/claim"): frozenset({RADIOLOGIST}),
    ("GET", "/api/cases/{case_id:uuid}/findings"): frozenset({ADMIN, RADIOLOGIST}),
    ("GET", "/api/cases/{case_id:uuid}/history"): frozenset({ADMIN, RADIOLOGIST}),
    ("POST", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/decisions"): frozenset(
        {RADIOLOGIST}
    ),
    ("POST", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/mask"): frozenset({RADIOLOGIST}),
    ("POST", "/api/cases/{case_id:uuid}/sign-off"): frozenset({RADIOLOGIST}),
    ("POST", "/api/cases/{case_id:uuid}/retry"): frozenset({ADMIN}),
    ("GET", "/api/cases/{case_id:uuid}/exports"): frozenset({ADMIN, RADIOLOGIST}),
    ("POST", "/api/cases/{case_id:uuid}/exports/retry"): frozenset({ADMIN}),
    ("GET", "/api/cases/{case_id:uuid}/instances/{instance_id:uuid}/frames/{frame:int}"): (
        frozenset({ADMIN, RADIOLOGIST})
    ),
    ("GET", "/api/cases/{case_id:uuid}/instances/{instance_id:uuid}/metadata"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    ("GET", "/api/cases/{case_id:uuid}/instances/{instance_id:uuid}/file"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/cam/{label:str}"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    (
        "GET",
        "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/slices/{plane:str}/{index:int}",
    ): frozenset({ADMIN, RADIOLOGIST}),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/volume"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/cam/{label:str}/map"): (
        frozenset({ADMIN, RADIOLOGIST})
    ),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/nifti/volume"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/nifti/labels"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    ("GET", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/per-slice"): frozenset(
        {ADMIN, RADIOLOGIST}
    ),
    (
        "GET",
        "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/per-slice/{index:int}/image",
    ): frozenset({ADMIN, RADIOLOGIST}),
    (
        "GET",
        "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/per-slice/{index:int}/heatmap",
    ): frozenset({ADMIN, RADIOLOGIST}),
    ("GET", "/api/audit"): frozenset({ADMIN}),
    ("GET", "/api/audit/verify"): frozenset({ADMIN}),
    ("GET", "/api/models"): ALL_ROLES,
    # DICOMweb (control.domain.dicomweb): integrations and admins store; readers search and
    # retrieve (radiologists only studies whose case they may see).
    ("POST", "/dicomweb/studies"): frozenset({ADMIN, INTEGRATION}),
    ("POST", "/dicomweb/studies/{study:str}"): frozenset({ADMIN, INTEGRATION}),
    **{
        ("GET", f"/dicomweb/studies{path}"): frozenset({ADMIN, RADIOLOGIST, INTEGRATION})
        for path in (
            "",
            "/{study:str}",
            "/{study:str}/metadata",
            "/{study:str}/series",
            "/{study:str}/instances",
            "/{study:str}/series/{series:str}",
            "/{study:str}/series/{series:str}/metadata",
            "/{study:str}/series/{series:str}/instances",
            "/{study:str}/series/{series:str}/instances/{instance:str}",
            "/{study:str}/series/{series:str}/instances/{instance:str}/metadata",
            "/{study:str}/series/{series:str}/instances/{instance:str}/rendered",
            "/{study:str}/series/{series:str}/instances/{instance:str}/frames/{frames:str}",
            "/{study:str}/series/{series:str}/instances/{instance:str}/frames/{frames:str}"
            "/rendered",
        )
    },
    ("GET", "/api/models/{name:str}/drift"): frozenset({ADMIN, MLOPS}),
}

# Routes that talk to Triton: with no Triton in these tests an allowed caller gets 503.
NEEDS_TRITON = {("GET", "/api/models")}

# /metrics: public by default (no PHI; MEDVISION_METRICS_PUBLIC=false guards it: admin, mlops).
PUBLIC_PATHS = {"/health", "/ready", "/api/auth/token", "/metrics"}
# The workstation's files (control.http.spa): public, and never answering under /api.
UI_PATHS = {"/", "/{file_path:path}"}

# How each route takes a body; anything not listed is sent without one.
FORM_ROUTES = {("POST", "/api/auth/revoke")}
MULTIPART_ROUTES = {
    ("POST", "/api/studies"),
    ("POST", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/mask"),
}
JSON_ROUTES = {
    ("POST", "/api/users"),
    ("PATCH", "/api/users/{user_id:uuid}"),
    ("PATCH", "/api/studies/{study_id:uuid}/demographics"),
    ("PATCH", "/api/cases/{case_id:uuid}"),
    ("POST", "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/decisions"),
    ("POST", "/api/cases/{case_id:uuid}/sign-off"),
    ("POST", "/api/cases/{case_id:uuid}/retry"),
}


def _is_public(path: str) -> bool:
    return (
        path in PUBLIC_PATHS or path in UI_PATHS or path == "/schema" or path.startswith("/schema/")
    )


@dataclass(frozen=True)
class GuardedRoute:
    method: str
    path: str
    allowed_roles: frozenset[str] | None


def _guarded_routes(app: Litestar) -> list[GuardedRoute]:
    """Every non-public, non-OPTIONS (method, path) with the roles its guards admit."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or _is_public(route.path):
            continue
        for handler in route.route_handlers:
            guards = [getattr(guard, "func", guard) for guard in handler.resolve_guards()]
            role_sets = [
                frozenset(role.value for role in guard.allowed_roles)
                for guard in guards
                if hasattr(guard, "allowed_roles")
            ]
            allowed = frozenset.intersection(*role_sets) if role_sets else None
            for method in sorted(handler.http_methods - {"OPTIONS"}):
                found.append(GuardedRoute(method, route.path, allowed))
    return found


ROUTE_KEYS = sorted(EXPECTED)


def test_every_non_public_route_has_a_role_guard(app: Litestar) -> None:
    unguarded = [
        f"{route.method} {route.path}"
        for route in _guarded_routes(app)
        if route.allowed_roles is None
    ]
    assert unguarded == [], f"routes without a requires(...) guard: {unguarded}"


def test_the_route_scan_notices_an_unguarded_route() -> None:
    """Self-check of ``_guarded_routes``: a handler without ``requires(...)`` shows as None."""

    @get("/api/guarded", guards=[requires(Role.ADMIN)])
    async def guarded() -> None:
        return None

    @get("/api/forgotten")
    async def forgotten() -> None:
        return None

    found = {
        (r.method, r.path): r.allowed_roles for r in _guarded_routes(Litestar([guarded, forgotten]))
    }
    assert found == {("GET", "/api/guarded"): frozenset({ADMIN}), ("GET", "/api/forgotten"): None}


def test_expected_table_matches_the_routes_and_their_guards(app: Litestar) -> None:
    actual = {(route.method, route.path): route.allowed_roles for route in _guarded_routes(app)}
    assert set(actual) - set(EXPECTED) == set(), "routes missing from EXPECTED"
    assert set(EXPECTED) - set(actual) == set(), "EXPECTED lists routes the app does not have"
    mismatched = {
        key: (actual[key], EXPECTED[key]) for key in EXPECTED if actual[key] != EXPECTED[key]
    }
    assert mismatched == {}, "guards differ from the spec: (actual, expected)"


def _concrete(path: str) -> str:
    """The template with every integer path parameter replaced by 0, every other by a random
    UUID, so that the route matches and only its guards and handler answer."""
    parts = []
    for part in path.split("/"):
        if part.endswith(":int}"):
            parts.append("0")
        else:
            parts.append(str(uuid.uuid4()) if part.startswith("{") else part)
    return "/".join(parts)


def _body(key: tuple[str, str]) -> dict[str, Any]:
    if key in JSON_ROUTES:
        return {"json": {}}
    if key in FORM_ROUTES:
        return {"data": {"token": ""}}
    if key in MULTIPART_ROUTES:
        return {"files": [("files", ("tiny.dcm", b"not really dicom"))]}
    return {}


async def _call(client, key: tuple[str, str], headers: dict[str, str] | None = None):
    method, path = key
    return await client.request(method, _concrete(path), headers=headers or {}, **_body(key))


# --- token forging ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims(account, **overrides: Any) -> dict[str, Any]:
    """Claims that would pass every check for ``account`` (valid, unexpired access token)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": account.id,
        "name": account.username,
        "role": account.role,
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _hmac_token(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_b64json({'alg': alg, 'typ': 'JWT'})}.{_b64json(claims)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _rs256_token(claims: dict[str, Any]) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_input = f"{_b64json({'alg': 'RS256', 'typ': 'JWT'})}.{_b64json(claims)}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _unsigned_token(claims: dict[str, Any]) -> str:
    return f"{_b64json({'alg': 'none', 'typ': 'JWT'})}.{_b64json(claims)}."


def _tampered(token: str, **changes: Any) -> str:
    """``token`` with its payload edited and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64json(claims)}.{signature}"


def _bad_tokens(accounts) -> dict[str, str]:
    admin, rad = accounts["admin1"], accounts["rad1"]
    key = SECRET.encode()
    expired = TokenCodec(key, access_ttl_s=-3600, refresh_ttl_s=60).issue(
        admin.id, admin.username, admin.role, "access"
    )
    return {
        "garbage": "not-a-jwt-at-all",
        "three_garbage_parts": "abc.def.ghi",
        "wrong_key": _hmac_token(_claims(admin), b"some-other-secret-key-" + b"y" * 32),
        "edited_payload": _tampered(rad.token, role="admin", sub=admin.id, name=admin.username),
        "alg_none": _unsigned_token(_claims(admin)),
        "hs512_right_key": _hmac_token(_claims(admin), key, alg="HS512"),
        "rs256": _rs256_token(_claims(admin)),
        "expired": expired.token,
        "expired_by_hand": _hmac_token(
            _claims(
                admin,
                iat=int(time.time()) - 7200,
                nbf=int(time.time()) - 7200,
                exp=int(time.time()) - 3600,
            ),
            key,
        ),
        "refresh_as_access": admin.refresh_token,
    }


def test_forged_control_token_is_accepted_by_the_codec() -> None:
    """Sanity check of the forging helpers: a correctly made HS256 token does verify."""
    account = SimpleNamespace(id=str(uuid.uuid4()), username="x", role="admin")
    codec = TokenCodec(SECRET.encode(), 60, 60)
    assert codec.verify(_hmac_token(_claims(account), SECRET.encode()), "access").role == "admin"


# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ROUTE_KEYS, ids=[f"{m} {p}" for m, p in ROUTE_KEYS])
async def test_route_access_by_role_and_token(client, accounts, key) -> None:
    allowed = EXPECTED[key]
    # Bad credentials first: an allowed call to revoke invalidates the caller's own token.
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YWRtaW46YWRtaW4="}):
        response = await _call(client, key, headers)
        assert response.status_code == 401, (headers, response.status_code, response.text)
        assert response.json()["code"] in {"not_authenticated"}, response.text
        assert "www-authenticate" in response.headers

    for name, token in _bad_tokens(accounts).items():
        response = await _call(client, key, {"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (name, response.status_code, response.text)
        expected = {"token_expired"} if name.startswith("expired") else {"invalid_token"}
        assert response.json()["code"] in expected, (name, response.text)
        assert "www-authenticate" in response.headers

    for role, username in ACCOUNT_OF_ROLE.items():
        response = await _call(client, key, accounts[username].headers)
        if role in allowed:
            assert response.status_code not in (401, 403), (
                role,
                response.status_code,
                response.text,
            )
            if key in NEEDS_TRITON and response.status_code == 503:
                assert response.json()["code"] == "inference_unavailable", response.text
            else:
                assert response.status_code < 500, (role, response.status_code, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert response.json()["code"] == "permission_denied", (role, response.text)
