"""Real Prometheus against the live stack, promtool on the alert rules, and the metric names
the dashboards and rules use checked against what the services export.

The stack is :class:`tests.fixtures.workstation_stack.WorkstationStack`: ``medvision serve``
(SQLite, private data directory, in-process worker) and a real ``tritonserver`` with the tiny
test networks. One chest radiograph goes through it (upload, job, Triton call, findings), then
the Debian ``prometheus`` scrapes both targets and its HTTP API is queried.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control.triton.server import TritonStartError, find_free_port, find_triton_install
from tests.fixtures.dx import chest_dx
from tests.fixtures.workstation_stack import WorkstationStack, _terminate
from tests.observability.helpers import exposed_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "medvision.rules.yml"
RULES_TEST = Path(__file__).with_name("rules_test.yml")
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
NEEDS_PROMETHEUS = "needs Debian package prometheus"
#: Metric names the rules or dashboards may use that a tritonserver without a GPU or a
#: response cache does not export here (nv_gpu_* exist on GPU nodes only).
TRITON_GPU_ONLY = {
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
}
METRIC = re.compile(r"\b((?:medvision|nv)_[a-zA-Z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason=NEEDS_PROMETHEUS)


def _triton_missing() -> str | None:
    try:
        find_triton_install()
    except TritonStartError as exc:
        return exc.message
    return None


def _names_in_expressions(text: str) -> set[str]:
    return set(METRIC.findall(text))


def used_metric_names() -> dict[str, set[str]]:
    """Metric names per file (the rules file, each dashboard) as written in their queries."""
    used = {RULES.name: _names_in_expressions(RULES.read_text())}
    for path in DASHBOARDS:
        used[path.name] = set().union(
            *(_names_in_expressions(expr) for expr in _dashboard_expressions_of(path))
        )
    return used


def _dashboard_expressions_of(path: Path) -> Iterator[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(json.loads(path.read_text()))


def _base_name(name: str, exported: set[str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in exported:
            return name.removesuffix(suffix)
    return name


def test_promtool_checks_the_rules_file() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_cover_every_alert() -> None:
    alerts = set(re.findall(r"^\s*-\s*alert:\s*(\S+)", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname:\s*(\S+)", RULES_TEST.read_text()))
    assert alerts and alerts <= tested, f"alerts without a unit test: {sorted(alerts - tested)}"
    firing = set(
        re.findall(
            r"alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels", RULES_TEST.read_text()
        )
    )
    assert alerts <= firing, f"alerts never shown firing: {sorted(alerts - firing)}"
    result = subprocess.run(
        ["promtool", "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkstationStack]:
    missing = _triton_missing()
    if missing:
        pytest.skip(f"tritonserver binary not available: {missing}")
    scratch = tmp_path_factory.mktemp("prometheus-stack")
    with WorkstationStack(scratch, web_dir=scratch / "no-web") as running:
        body = running.upload([("chest.dcm", chest_dx(128, seed=3))])
        case = running.wait_read(str(body["case_ids"][0]))
        assert case["status"] not in ("failed",), case
        yield running


def _scrape(url: str) -> str:
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.text


@pytest.fixture(scope="module")
def prometheus(stack: WorkstationStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("prometheus") is None:
        pytest.skip(NEEDS_PROMETHEUS)
    folder = tmp_path_factory.mktemp("prometheus")
    api = stack.base_url.removeprefix("http://")
    triton = stack._triton
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "medvision-api", "static_configs": [{"targets": [api]}]},
            {
                "job_name": "triton",
                "static_configs": [{"targets": [f"{triton.host}:{triton.metrics_port}"]}],
            },
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    port = find_free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _terminate(process)


def _query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict] = body["data"]["result"]
    return result


def _wait_for(prometheus: str, expr: str, timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = _query(prometheus, expr)
            if result:
                return result
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no result for {expr!r} in {timeout_s:g} s")
        time.sleep(0.5)


def test_prometheus_scrapes_the_control_plane_and_triton(prometheus: str) -> None:
    up = _wait_for(prometheus, "count(up == 1) == 2")
    assert up
    targets = {r["metric"]["job"]: r["value"][1] for r in _query(prometheus, "up")}
    assert targets == {"medvision-api": "1", "triton": "1"}
    findings = _wait_for(prometheus, 'medvision_findings_total{model="cxr"}')
    assert sum(float(r["value"][1]) for r in findings) >= 1
    queue = _wait_for(prometheus, "medvision_jobs_queue_depth")
    assert {r["metric"]["pipeline"] for r in queue} >= {"cxr", "brats"}
    jobs = _wait_for(prometheus, 'medvision_job_attempts_total{outcome="done"}')
    assert jobs[0]["metric"]["pipeline"] == "cxr"
    assert _wait_for(prometheus, 'medvision_triton_request_duration_seconds_count{model="cxr"}')
    assert _wait_for(prometheus, 'medvision_ingest_instances_total{source="http",result="stored"}')
    assert _wait_for(prometheus, "medvision_audit_chain_ok == 1")
    assert _wait_for(prometheus, "nv_inference_request_success > 0")
    # The rules file loads in a real Prometheus and its groups evaluate.
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {rule["health"] for group in rules for rule in group["rules"]} == {"ok"}


def test_every_metric_the_dashboards_and_rules_use_is_exported(stack: WorkstationStack) -> None:
    exported = exposed_names(_scrape(f"{stack.base_url}/metrics"))
    exported |= exposed_names(_scrape(stack._triton.url_metrics)) | TRITON_GPU_ONLY
    missing = {
        source: sorted(n for n in names if _base_name(n, exported) not in exported)
        for source, names in used_metric_names().items()
    }
    assert DASHBOARDS, "no dashboards to check"
    assert not any(missing.values()), missing
