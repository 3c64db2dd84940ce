"""The control plane's in-process Prometheus metrics and the ASGI middleware timing requests.

These are the figures only the process that did the work knows: request latency, ingest
counts, job durations and attempts, Triton call latency. They live in prometheus_client's
default registry; with ``PROMETHEUS_MULTIPROC_DIR`` set (several processes behind one
port) prometheus_client keeps them in memory-mapped files and ``/metrics`` merges them (see
:func:`control.observability.endpoint.registry_for_scrape`). Figures the database knows
(queue depth, findings, decisions, sign-off turnaround, audit state, drift) are not here:
:mod:`control.observability.collectors` derives them at scrape time, so every process
reports the same truth and nothing is lost on a restart.

Labels never carry identifiers or names: a route is its template, a modality a DICOM code.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

#: Request latency buckets (seconds): API calls are ms, uploads of a study can take seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Job and inference buckets (seconds): a radiograph is ~0.1-1 s, a BraTS volume up to minutes.
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

HTTP_REQUEST_DURATION = Histogram(
    "medvision_http_request_duration_seconds",
    "HTTP request latency by method, route template and response status",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
INGEST_INSTANCES = Counter(
    "medvision_ingest_instances",
    "DICOM/NIfTI instances received, by source (http, dimse, stow), modality and result "
    "(stored, existing, rejected:<error code>)",
    ["source", "modality", "result"],
)
JOB_DURATION = Histogram(
    "medvision_job_duration_seconds",
    "Wall time of one inference job attempt (claim to result or failure), by pipeline and "
    "outcome (done, retry, failed, discarded)",
    ["pipeline", "outcome"],
    buckets=JOB_BUCKETS,
)
JOB_ATTEMPTS = Counter(
    "medvision_job_attempts",
    "Inference job attempts run by this process, by pipeline and outcome",
    ["pipeline", "outcome"],
)
TRITON_REQUEST_DURATION = Histogram(
    "medvision_triton_request_duration_seconds",
    "Latency of one Triton inference call as the client sees it (retries included), by model",
    ["model"],
    buckets=JOB_BUCKETS,
)

#: Route label of a request no route matched (404s): never the raw path, which is unbounded.
UNMATCHED_ROUTE = "unmatched"


def record_ingest(source: str, modality: str | None, result: str, count: int = 1) -> None:
    """Count ``count`` instances received through ``source`` with ``result``."""
    if count > 0:
        INGEST_INSTANCES.labels(source, (modality or "unknown").upper()[:16], result).inc(count)


def _route_template(scope: Scope) -> str:
    template = scope.get("path_template")
    return str(template) if template else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Observes each HTTP request's duration under its route template and final status.

    Litestar's own PrometheusMiddleware names its labels ``path``/``status_code`` and adds
    ``app_name``; the dashboards and alert rules are written against ``route``/``status``
    (docs/monitoring.md), so this thin middleware observes the same histogram with those.
    A request that ends in an exception Litestar did not turn into a response counts as 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            HTTP_REQUEST_DURATION.labels(
                scope.get("method", "GET"), _route_template(scope), str(status["code"])
            ).observe(time.perf_counter() - started)
