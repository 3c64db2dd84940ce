"""The shared alert rules and the Grafana dashboards query only the contract's metric names,
the alert names stay stable, and the rules file is valid for Prometheus (promtool)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.conftest import (
    CONTRACT_METRICS,
    DASHBOARDS,
    REPO,
    RULES_FILE,
    base_metric,
    promql_metric_names,
)

#: Alert names are a contract with the promtool unit tests (tests/observability/) and with
#: alert routing: a rename must change this list on purpose.
STABLE_ALERTS = {
    "MedVisionModelDriftPSI",
    "MedVisionRadiologistDisagreementHigh",
    "MedVisionJobQueueOldestDueHigh",
    "MedVisionJobsFailing",
    "MedVisionApiHighErrorRatio",
    "MedVisionAuditChainBroken",
    "MedVisionAuditChainUnverified",
    "MedVisionTritonQueueTimeHigh",
    "MedVisionTritonSlowInference",
}

EXTRACTION_CASES = [
    ("sum(rate(foo_total[5m]))", {"foo_total"}),
    ('max by (model, le) (a_bucket{x="y"}) / ignoring(le) b > 0.2', {"a_bucket", "b"}),
    ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
    ('x / 1e3 > 100 and on (pod) absent(up{job="a"})', {"x", "up"}),
    ('count(count by (instance) (nv_inference_count{model=~"$model"}))', {"nv_inference_count"}),
]


def rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
        for rule in group["rules"]
    ]


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard file, PromQL) of every panel target and query variable."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((path.name, target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]["query"]
                assert query.startswith("label_values("), query
                out.append((path.name, query[len("label_values(") :].split(",")[0]))
    return out


@pytest.mark.parametrize(("expr", "expected"), EXTRACTION_CASES)
def test_metric_name_extraction(expr, expected):
    assert promql_metric_names(expr) == expected


def test_rules_query_only_contract_metrics():
    unknown = {
        (rule["alert"], name)
        for rule in rules()
        for name in promql_metric_names(rule["expr"])
        if base_metric(name) not in CONTRACT_METRICS
    }
    assert not unknown


def test_dashboards_query_only_contract_metrics():
    queries = dashboard_queries()
    assert len(queries) >= 20
    unknown = {
        (board, name)
        for board, expr in queries
        for name in promql_metric_names(expr)
        if base_metric(name) not in CONTRACT_METRICS
    }
    assert not unknown


def test_alert_names_are_stable_and_labelled():
    alerts = rules()
    assert {rule["alert"] for rule in alerts} == STABLE_ALERTS
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_drift_alert_is_psi_above_point_two_for_an_hour():
    drift = next(rule for rule in rules() if rule["alert"] == "MedVisionModelDriftPSI")
    assert "medvision_drift_psi" in drift["expr"] and "> 0.2" in drift["expr"]
    assert drift["for"] == "1h"


def test_dashboards_pick_their_datasource_through_a_variable():
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        variables = {item["name"]: item for item in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
    assert len(uids) == len(list(DASHBOARDS.glob("*.json"))) == 3


def test_dashboards_cover_the_issue_signals():
    text = " ".join(expr for _, expr in dashboard_queries())
    for name in (
        "medvision_drift_psi",
        "medvision_decisions_total",
        "nv_inference_queue_duration_us",
        "medvision_jobs_queue_depth",
        "nv_gpu_utilization",
        "medvision_audit_chain_ok",
    ):
        assert name in text, name


def test_promtool_checks_the_rules_file():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(STABLE_ALERTS)} rules found" in result.stdout


def test_deploying_guide_covers_every_alert_and_topic():
    guide = (REPO / "docs" / "deploying.md").read_text()
    for heading in (
        "## One machine: Docker Compose",
        "## Kubernetes: the Helm chart",
        "### GPU nodes",
        "### Scaling knobs",
        "## What to watch",
    ):
        assert heading in guide, heading
    missing = {name for name in STABLE_ALERTS if f"`{name}`" not in guide}
    assert not missing
