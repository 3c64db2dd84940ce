"""``GET /metrics``: the process's own metrics and the database-derived ones, in Prometheus
text format, both rendered by prometheus_client.

Public by default: it carries no PHI (labels are route templates, modalities, model names,
versions, label names and pipelines, never ids or names). ``MEDVISION_METRICS_PUBLIC=false``
puts it behind a bearer token of an admin or mlops account (a Prometheus service account).
It is left out of the OpenAPI schema: it is for Prometheus, not for API clients.
"""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from control.db.models import Role
from control.domain.auth.guards import requires

METRICS_PATH = "/metrics"


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's under ``PROMETHEUS_MULTIPROC_DIR``
    (prometheus_client's multiprocess mode: several processes behind one port)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def metrics_handler(public: bool) -> HTTPRouteHandler:
    """The ``/metrics`` route, guarded (admin, mlops) unless ``public``."""

    @get(
        METRICS_PATH,
        operation_id="getMetrics",
        guards=[] if public else [requires(Role.ADMIN, Role.MLOPS)],
        include_in_schema=False,
        cache_control=None,
    )
    async def metrics(state: State) -> Response[bytes]:
        """Prometheus exposition of the process's and the database-derived metrics."""
        database = state.db_metrics
        await database.refresh()
        body = generate_latest(process_registry()) + generate_latest(database.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def serve_process_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Expose this process's metrics on ``host:port`` from a background thread (the
    standalone worker, which has no HTTP server: ``MEDVISION_WORKER_METRICS_PORT``).

    Only process metrics (job durations and attempts, Triton latency): the database-derived
    ones come from the API's ``/metrics``, so that each series has one source.
    """
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=process_registry())
