"""``GET /metrics``: the contract's metric names, HTTP/ingest counts, and the figures derived
from the database (queue, findings, decisions, sign-off turnaround, audit chain)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from litestar.testing import AsyncTestClient

from control.app import create_app
from control.config import Settings
from control.db.models import DecisionAction
from tests.conftest import make_account
from tests.observability.helpers import (
    add_findings,
    exposed_names,
    parse_exposition,
    upload_chest,
)

#: The metric names the dashboards, alert rules and autoscalers rely on (docs/monitoring.md).
CONTRACT = {
    "medvision_http_request_duration_seconds",
    "medvision_ingest_instances_total",
    "medvision_jobs_queue_depth",
    "medvision_jobs_oldest_due_age_seconds",
    "medvision_job_duration_seconds",
    "medvision_job_attempts_total",
    "medvision_triton_request_duration_seconds",
    "medvision_findings_total",
    "medvision_decisions_total",
    "medvision_signoff_turnaround_seconds",
    "medvision_audit_chain_ok",
    "medvision_drift_psi",
    "medvision_drift_ks",
}


async def _metrics(client: AsyncTestClient, headers: dict[str, str] | None = None) -> str:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_expose_the_contract_names_without_a_token(app, client, accounts) -> None:
    await app.state.db_metrics.verify_audit()
    text = await _metrics(client)
    assert exposed_names(text) >= CONTRACT
    samples = parse_exposition(text)
    assert ({}, 1.0) in samples["medvision_audit_chain_ok"]


async def test_upload_counts_ingest_and_route_template_and_queues_a_job(
    app, client, accounts
) -> None:
    def value(samples, name, **labels) -> float:
        return sum(v for ls, v in samples.get(name, []) if labels.items() <= ls.items())

    before = parse_exposition(await _metrics(client))
    case_id = await upload_chest(client, accounts["admin1"])
    await app.state.db_metrics.refresh(force=True)
    after = parse_exposition(await _metrics(client))
    stored = dict(source="http", modality="DX", result="stored")
    assert (
        value(after, "medvision_ingest_instances_total", **stored)
        - value(before, "medvision_ingest_instances_total", **stored)
        == 1
    )
    http = {"method": "POST", "route": "/api/studies", "status": "201"}
    assert value(after, "medvision_http_request_duration_seconds_count", **http) >= 1
    # Labels never carry ids: no sample label holds the case id.
    assert case_id not in "".join(str(ls) for series in after.values() for ls, _ in series)
    assert value(after, "medvision_jobs_queue_depth", pipeline="cxr") == 1
    assert value(after, "medvision_jobs_oldest_due_age_seconds", pipeline="cxr") >= 0


async def test_a_rejected_upload_is_counted_by_its_error_code(app, client, accounts) -> None:
    def rejected(text: str, code: str) -> float:
        return sum(
            v
            for ls, v in parse_exposition(text).get("medvision_ingest_instances_total", [])
            if ls["source"] == "http" and ls["result"] == f"rejected:{code}"
        )

    before = await _metrics(client)
    files = [("files", ("junk.dcm", b"not a dicom file at all"))]
    response = await client.post("/api/studies", files=files, headers=accounts["admin1"].headers)
    assert response.status_code >= 400
    code = response.json()["code"]
    # Counters are per process (the suite's other tests count too): compare the increase.
    assert rejected(await _metrics(client), code) - rejected(before, code) == 1


async def test_findings_and_decisions_are_counted_from_the_database(app, client, accounts) -> None:
    case_id = await upload_chest(client, accounts["admin1"])
    sample = {"probabilities": {"Effusion": 0.9, "Mass": 0.1}}
    await add_findings(app, case_id, "cxr", "v1", [sample, sample], decision=DecisionAction.REJECT)
    await app.state.db_metrics.refresh(force=True)
    samples = parse_exposition(await _metrics(client))
    findings = {
        (ls["model"], ls["version"], ls["label"]): v
        for ls, v in samples["medvision_findings_total"]
    }
    assert findings[("cxr", "v1", "Effusion")] == 2
    decisions = {
        (ls["model"], ls["label"], ls["action"]): v
        for ls, v in samples["medvision_decisions_total"]
    }
    assert decisions[("cxr", "Effusion", "reject")] == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_can_require_an_admin_or_mlops_token(settings: Settings) -> None:
    private = create_app(settings.model_copy(update={"metrics_public": False}))
    async with AsyncTestClient(app=private) as client:
        assert (await client.get("/metrics")).status_code == 401
        radiologist = await make_account(private, client, "rad9", "radiologist")
        assert (await client.get("/metrics", headers=radiologist.headers)).status_code == 403
        mlops = await make_account(private, client, "mlops9", "mlops")
        await _metrics(client, mlops.headers)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_can_be_switched_off(settings: Settings) -> None:
    off = create_app(settings.model_copy(update={"metrics_enabled": False}))
    async with AsyncTestClient(app=off) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_the_standalone_worker_serves_its_process_metrics() -> None:
    from control.observability.endpoint import serve_process_metrics
    from control.observability.metrics import JOB_ATTEMPTS
    from control.triton.server import find_free_port

    JOB_ATTEMPTS.labels("cxr", "done").inc(0)
    port = find_free_port()
    serve_process_metrics(port, host="127.0.0.1")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert {"medvision_job_attempts_total", "medvision_job_duration_seconds"} <= exposed_names(text)
    # The database-derived series come from the API only: one source per series.
    assert "medvision_jobs_queue_depth" not in exposed_names(text)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_signoff_turnaround_is_derived_from_signed_cases(app, client, accounts) -> None:
    from datetime import timedelta

    from control.db.models import Case, CaseStatus

    case_id = await upload_chest(client, accounts["admin1"])
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        case.status = CaseStatus.SIGNED_OFF
        case.pipeline = "cxr"
        case.signed_off_at = case.created_at + timedelta(minutes=10)
        await session.commit()
    await app.state.db_metrics.refresh(force=True)
    samples = parse_exposition(await _metrics(client))
    buckets = {
        ls["le"]: v
        for ls, v in samples["medvision_signoff_turnaround_seconds_bucket"]
        if ls["pipeline"] == "cxr"
    }
    assert buckets["300.0"] == 0 and buckets["900.0"] == 1 and buckets["+Inf"] == 1
    total = [
        v
        for ls, v in samples["medvision_signoff_turnaround_seconds_sum"]
        if ls["pipeline"] == "cxr"
    ]
    assert total == [pytest.approx(600, abs=1)]
