"""OpenTelemetry traces: one trace from an upload through its job, Triton and the results.

Off by default. :func:`configure_tracing` installs the SDK's tracer provider only when the
standard variables ask for an exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER``; ``OTEL_SDK_DISABLED=true``
wins); everything else (service name, resource attributes, sampler, headers, TLS) is read by
the SDK from the other ``OTEL_*`` variables. Without it the API's no-op tracer makes every
span here free.

The trace crosses two boundaries that are not a function call:

* upload → worker: an inference job inserted while a span is current stores that span's
  W3C ``traceparent`` in ``inference_jobs.trace_context`` (:func:`_stamp_job`, a SQLAlchemy
  ``before_insert`` hook, so every enqueue path carries it without knowing about tracing);
  the worker that claims the job continues that trace (:func:`job_context`);
* worker → Triton: the ``traceparent`` travels in the gRPC metadata
  (:func:`grpc_trace_headers`), which Triton's own OpenTelemetry tracing
  (``--trace-config mode=opentelemetry``) takes as its parent.

Span attributes carry case, job and finding ids, model names and versions: never PHI.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import event

from control.db.models import InferenceJob

TRACER_NAME = "medvision.control"
#: Span attribute names (medvision.* for ours, OpenTelemetry semantic conventions otherwise).
CASE_ID = "medvision.case_id"
JOB_ID = "medvision.job_id"
PIPELINE = "medvision.pipeline"
MODEL = "medvision.model"
MODEL_VERSION = "medvision.model_version"

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = threading.Lock()
_done = False


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service_name: str) -> bool:
    """Install an OTLP (or console) exporting tracer provider once per process when requested.

    ``service_name`` is used unless ``OTEL_SERVICE_NAME`` names one. Returns whether this
    process exports traces. A provider installed before (e.g. by a test) is left alone.
    """
    global _done
    if not tracing_requested():
        return False
    with _configured:
        if _done:
            return True
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )

        exporter: SpanExporter
        if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _done = True
        return True


def tracer() -> trace.Tracer:
    """The control plane's tracer (from the provider installed now, no-op when none)."""
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when no valid span is current."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """The context a stored ``traceparent`` names (as a remote parent), or None."""
    if not traceparent:
        return None
    extracted = _PROPAGATOR.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(extracted).get_span_context()
    return extracted if span_context.is_valid else None


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The caller's context from incoming HTTP headers (``traceparent``/``tracestate``)."""
    return _PROPAGATOR.extract(dict(headers))


def grpc_trace_headers() -> dict[str, str]:
    """gRPC metadata carrying the current span's context (empty when there is none).

    The trace flags keep only the ``sampled`` bit: opentelemetry-python sets W3C Trace
    Context level 2's ``random-trace-id`` bit too (flags ``03``), and the OpenTelemetry C++
    propagator inside Triton 2.51 refuses such a ``traceparent`` and starts a trace of its
    own (seen in tests/observability/test_tracing.py against a real tritonserver).
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    traceparent = carrier.get("traceparent")
    if traceparent:
        flags = int(traceparent[-2:], 16) & 0x01
        carrier["traceparent"] = f"{traceparent[:-2]}{flags:02x}"
    return carrier


def job_context(trace_context: str | None) -> otel_context.Context | None:
    """The parent context a claimed job continues: the span that queued it, if recorded."""
    return context_from_traceparent(trace_context)


@event.listens_for(InferenceJob, "before_insert")
def _stamp_job(mapper: Any, connection: Any, target: InferenceJob) -> None:
    """Record the current span's context on a new inference job (upload → worker link)."""
    if target.trace_context is None:
        target.trace_context = current_traceparent()


class HttpTracingMiddleware:
    """A server span per HTTP request, child of the caller's ``traceparent`` when it sent one.

    Named ``<METHOD> <route template>`` with the route and status as attributes (never the
    raw path or query). Work the request does (an upload's ingest, the job it queues) runs
    inside it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", [])
            if key in (b"traceparent", b"tracestate")
        }
        method = str(scope.get("method", "GET"))
        route = str(scope.get("path_template") or "unmatched")
        with tracer().start_as_current_span(
            f"{method} {route}",
            context=context_from_headers(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(trace.StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, traced_send)


@contextmanager
def ingest_span(source: str, files: int) -> Iterator[trace.Span]:
    """The span of one ingest (an HTTP upload, a C-STORE batch, a STOW-RS request), by
    ``source``. Under an HTTP request it is that request's child; where nothing traced called
    it (the DICOM listener) it starts the trace, so the jobs it queues carry it either way."""
    with tracer().start_as_current_span(
        f"ingest {source}", attributes={"medvision.source": source, "medvision.files": files}
    ) as span:
        yield span
