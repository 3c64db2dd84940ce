"""Health, readiness, request ids, structured logs and the OpenAPI schema."""

from __future__ import annotations

import json

from litestar.testing import AsyncTestClient

from control.app import create_app


async def test_health_and_ready(client):
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "storage", "triton"}
    # No Triton in this test and MEDVISION_TRITON_REQUIRED=false: reported, not gating.
    assert body["checks"]["triton"]["ok"] is False


async def test_ready_reports_an_unreachable_store(settings, s3_server):
    broken = settings.model_copy(
        update={
            "s3_endpoint": "127.0.0.1:9",
            "s3_access_key": s3_server.access_key,
            "s3_secret_key": s3_server.secret_key,
        }
    )
    async with AsyncTestClient(app=create_app(broken)) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["storage"]["ok"] is False


async def test_request_id_is_made_by_the_server_and_logged_as_json(client, capsys):
    response = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    server_id = response.headers["x-request-id"]
    assert server_id != "trace-123"
    assert len(server_id) == 32
    generated = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r.get("event") == "request" and r.get("path") == "/health"]
    # The client's own id is kept beside the server's, for correlating with its logs.
    assert any(
        r["request_id"] == server_id
        and r["client_request_id"] == "trace-123"
        and r["status"] == 200
        for r in access
    )


async def test_errors_carry_codes_and_request_ids(client, accounts):
    missing = await client.get("/api/nowhere", headers=accounts["admin1"].headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    bad_param = await client.get("/api/cases?limit=5000", headers=accounts["admin1"].headers)
    assert bad_param.status_code == 400
    assert bad_param.json()["code"] == "validation_failed"


async def test_openapi_schema_names_every_operation(client):
    schema = (await client.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]
        for path in schema["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert {"issueToken", "uploadStudies", "listCases", "verifyAuditChain"} <= operations
    assert "BearerToken" in schema["components"]["securitySchemes"]


async def test_redis_cache_backs_login_throttling(settings):
    """Login throttling state lives in Redis when MEDVISION_REDIS_URL is set (shared by workers)."""
    import redis.asyncio as aioredis

    from tests.conftest import REQUIRE_SERVICES

    url = "redis://127.0.0.1:6379/15"
    probe = aioredis.from_url(url)
    try:
        await probe.ping()
    except Exception:
        if REQUIRE_SERVICES:
            raise
        import pytest

        pytest.skip("needs the Redis server on 127.0.0.1:6379")
    await probe.flushdb()
    app = create_app(settings.model_copy(update={"redis_url": url}))
    async with AsyncTestClient(app=app) as client:
        for _ in range(3):
            response = await client.post(
                "/api/auth/token",
                data={"grant_type": "password", "username": "nobody", "password": "x" * 12},
            )
            assert response.status_code == 400
        blocked = await client.post(
            "/api/auth/token",
            data={"grant_type": "password", "username": "nobody", "password": "x" * 12},
        )
        assert blocked.status_code == 429
    keys = [key.decode() for key in await probe.keys("*")]
    assert any("login-fail:user:nobody" in key for key in keys)
    await probe.flushdb()
    await probe.aclose()
