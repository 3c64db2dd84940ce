"""Shared fixtures of the deployment tests: the repository paths, the chart rendered with
each CI value set (Helm v4 through helm-python-sdk), and the metric-name contract."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = REPO / "helm" / "medvision"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "medvision.rules.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
VALUE_SETS = ("default", "gpu-keda", "external-services")
RELEASE, NAMESPACE = "mv", "medvision"

#: The metric names the control plane and Triton export (issue 13): the only names the
#: dashboards, alert rules and autoscalers may query. Histograms add _bucket/_count/_sum.
HISTOGRAMS = {
    "medvision_http_request_duration_seconds",
    "medvision_job_duration_seconds",
    "medvision_triton_request_duration_seconds",
    "medvision_signoff_turnaround_seconds",
}
CONTRACT_METRICS = HISTOGRAMS | {
    "medvision_ingest_instances_total",
    "medvision_jobs_queue_depth",
    "medvision_jobs_oldest_due_age_seconds",
    "medvision_job_attempts_total",
    "medvision_findings_total",
    "medvision_decisions_total",
    "medvision_audit_chain_ok",
    "medvision_drift_psi",
    "medvision_drift_ks",
    "nv_inference_queue_duration_us",
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_gpu_utilization",
}

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, aggregations, label names,
    keywords, numbers, strings and Grafana variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def base_metric(name: str) -> str:
    """A histogram's series name without its _bucket/_count/_sum suffix."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def load_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())


@pytest.fixture(scope="session")
def helm():
    return pytest.importorskip("helm_python", reason="helm-python-sdk (Helm v4) not installed")


@pytest.fixture(scope="session")
def chart(helm):
    loaded = helm.Chart.load(str(CHART))
    yield loaded
    loaded.close()


def split_manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path)
                docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def rendered(chart) -> dict[str, list[dict[str, Any]]]:
    """Every value set's manifests, rendered once as an install."""
    return {
        name: split_manifests(
            chart.render(load_values(name), name=RELEASE, namespace=NAMESPACE, is_install=True)
        )
        for name in VALUE_SETS
    }


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def component(name: str) -> str:
    return f"{RELEASE}-medvision-{name}"


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    out = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            out.append(
                (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
            )
    return out
