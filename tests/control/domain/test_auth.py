"""OAuth2 grants, refresh rotation, logout, login throttling and their audit entries."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, make_account


async def _token(client, **form):
    return await client.post("/api/auth/token", data=form)


async def _audit(client, admin, action):
    response = await client.get(f"/api/audit?action={action}", headers=admin.headers)
    assert response.status_code == 200
    return response.json()


async def test_password_grant_issues_working_tokens(client, accounts):
    rad = accounts["rad1"]
    me = await client.get("/api/users/me", headers=rad.headers)
    assert me.status_code == 200
    assert me.json()["username"] == "rad1"
    assert me.json()["role"] == "radiologist"
    response = await _token(client, grant_type="password", username="rad1", password=PASSWORD)
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["refresh_token"]


async def test_wrong_password_is_rejected_and_audited(client, accounts):
    response = await _token(client, grant_type="password", username="rad1", password="nope" * 4)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_grant"
    assert response.json()["error"] == "invalid_grant"
    unknown = await _token(client, grant_type="password", username="ghost", password="x" * 12)
    assert unknown.status_code == 400
    entries = await _audit(client, accounts["admin1"], "auth.login_failed")
    assert [e["actor"] for e in entries] == ["rad1", "ghost"]
    assert all(e["outcome"] == "failure" for e in entries)


async def test_repeated_failures_are_rate_limited(client, accounts):
    # settings fixture: login_max_failures=3
    for _ in range(3):
        bad = await _token(client, grant_type="password", username="rad2", password="wrong" * 3)
        assert bad.status_code == 400
    blocked = await _token(client, grant_type="password", username="rad2", password=PASSWORD)
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "rate_limited"
    other = await _token(client, grant_type="password", username="rad1", password=PASSWORD)
    assert other.status_code == 200
    entries = await _audit(client, accounts["admin1"], "auth.login_failed")
    assert json_reasons(entries) == ["bad_credentials"] * 3 + ["rate_limited"]


def json_reasons(entries):
    return [entry["details"]["reason"] for entry in entries]


async def test_client_credentials_only_for_integration_accounts(client, accounts):
    ok = await _token(
        client, grant_type="client_credentials", client_id="pacs1", client_secret=PASSWORD
    )
    assert ok.status_code == 200
    assert ok.json()["role"] == "integration"
    person = await _token(
        client, grant_type="client_credentials", client_id="rad1", client_secret=PASSWORD
    )
    assert person.status_code == 400
    assert person.json()["code"] == "unauthorized_client"
    service = await _token(client, grant_type="password", username="pacs1", password=PASSWORD)
    assert service.status_code == 400
    assert service.json()["code"] == "unauthorized_client"
    bad = await _token(
        client, grant_type="client_credentials", client_id="pacs1", client_secret="x" * 20
    )
    assert bad.status_code == 401
    assert bad.json()["code"] == "invalid_client"


async def test_refresh_rotates_and_detects_reuse(client, accounts):
    rad = accounts["rad1"]
    first = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert first.status_code == 200
    rotated = first.json()
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 200
    reuse = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert reuse.status_code == 400
    assert reuse.json()["code"] == "invalid_grant"
    # Reuse of a rotated token revokes the whole family, including the newest one.
    newest = await _token(
        client, grant_type="refresh_token", refresh_token=rotated["refresh_token"]
    )
    assert newest.status_code == 400
    access_as_refresh = await _token(client, grant_type="refresh_token", refresh_token=rad.token)
    assert access_as_refresh.status_code == 400


async def test_logout_revokes_access_and_refresh_tokens(client, accounts):
    rad = accounts["rad1"]
    out = await client.post(
        "/api/auth/revoke", data={"token": rad.refresh_token}, headers=rad.headers
    )
    assert out.status_code == 204
    after = await client.get("/api/users/me", headers=rad.headers)
    assert after.status_code == 401
    assert after.json()["code"] == "token_revoked"
    refresh = await _token(client, grant_type="refresh_token", refresh_token=rad.refresh_token)
    assert refresh.status_code == 400
    assert (await _audit(client, accounts["admin1"], "auth.logout"))[0]["actor"] == "rad1"


async def test_disabled_or_demoted_user_loses_access(client, accounts):
    admin, rad = accounts["admin1"], accounts["rad2"]
    demote = await client.patch(
        f"/api/users/{rad.id}", json={"role": "mlops"}, headers=admin.headers
    )
    assert demote.status_code == 200
    stale = await client.get("/api/users/me", headers=rad.headers)
    assert stale.status_code == 401
    disable = await client.patch(
        f"/api/users/{rad.id}", json={"is_active": False}, headers=admin.headers
    )
    assert disable.status_code == 200
    login = await _token(client, grant_type="password", username="rad2", password=PASSWORD)
    assert login.status_code == 400
    self_lockout = await client.patch(
        f"/api/users/{admin.id}", json={"is_active": False}, headers=admin.headers
    )
    assert self_lockout.status_code == 400
    assert self_lockout.json()["code"] == "self_lockout"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"grant_type": "implicit"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "rad1"}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "garbage"}, "invalid_grant"),
    ],
)
async def test_malformed_token_requests(client, form, code):
    response = await _token(client, **form)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_admin_manages_users(app, client, accounts):
    admin = accounts["admin1"]
    created = await client.post(
        "/api/users",
        json={"username": "newrad", "password": "a-long-password!", "role": "radiologist"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    duplicate = await client.post(
        "/api/users",
        json={"username": "newrad", "password": "a-long-password!", "role": "radiologist"},
        headers=admin.headers,
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "username_taken"
    weak = await client.post(
        "/api/users",
        json={"username": "weak", "password": "short", "role": "radiologist"},
        headers=admin.headers,
    )
    assert weak.status_code == 400
    assert weak.json()["code"] == "weak_password"
    unknown = await client.post(
        "/api/users",
        json={"username": "u2", "password": "a-long-password!", "role": "admin", "x": 1},
        headers=admin.headers,
    )
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "validation_failed"
    listing = await client.get("/api/users?role=radiologist", headers=admin.headers)
    assert {u["username"] for u in listing.json()} == {"rad1", "rad2", "newrad"}
    assert "password" not in str(listing.json()).lower().replace("password_", "")
    newrad = await make_account_login(client, "newrad", "a-long-password!")
    assert newrad.status_code == 200


async def make_account_login(client, username, password):
    return await _token(client, grant_type="password", username=username, password=password)


async def test_passwords_are_stored_as_argon2(app, accounts):
    from sqlalchemy import select

    from control.db.models import User

    async with app.state.session_factory() as session:
        hashes = (await session.scalars(select(User.password_hash))).all()
    assert hashes
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert all(PASSWORD not in h for h in hashes)


async def test_make_account_helper_roundtrip(app, client):
    account = await make_account(app, client, "solo", "mlops")
    me = await client.get("/api/users/me", headers=account.headers)
    assert me.json()["role"] == "mlops"
