"""One trace from an upload to stored findings, recorded with the SDK's in-memory exporter.

The upload goes through the real app (HTTP span, ingest, audit; the queued job keeps the
trace context); a real :class:`~control.inference.worker.Worker` claims the job and runs the
real :class:`TritonClient`. In the first test its gRPC stub is a recorder of the metadata it
is given (runs everywhere); in the second a real ``tritonserver`` (tiny test networks) with
``--trace-config mode=opentelemetry`` exports its own spans to a small OTLP/HTTP receiver,
and its ``InferRequest`` span must be the child of the worker's Triton client span.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from control.inference.worker import Worker
from control.observability.tracing import tracing_requested
from control.triton.client import TritonClient
from medvision_contract.labels import CXR_LABELS
from tests.observability.helpers import upload_chest

LABELS = list(CXR_LABELS)
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


class _Result:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def as_numpy(self, name: str) -> np.ndarray:
        return self.arrays[name]


class RecordingGrpc:
    """Stands in for tritonclient's aio stub: model configs, and infers that record headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str] | None] = []

    async def get_model_config(self, name: str, **_: Any) -> dict[str, Any]:
        parameters = {
            "cxr_net": {"model_version": "cxr-7 (test)", "training_run_id": "run-7"},
            "cxr_postprocess": {"labels": ",".join(LABELS), "thresholds": ",".join(["0.5"] * 14)},
        }.get(name, {})
        return {"config": {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}}

    async def infer(self, model: str, inputs: Any, **kwargs: Any) -> _Result:
        self.headers.append(kwargs.get("headers"))
        probabilities = np.linspace(0.05, 0.95, 14, dtype=np.float32)
        return _Result(
            {
                "PROBABILITIES": probabilities,
                "POSITIVE": probabilities > 0.5,
                "CAM": np.zeros((14, 8, 8), np.uint8),
            }
        )

    async def close(self) -> None:
        return None


def _worker(app: Any, settings: Any) -> tuple[Worker, RecordingGrpc]:
    grpc = RecordingGrpc()
    triton = TritonClient("127.0.0.1:1", use_shared_memory=False)
    triton._client = grpc  # type: ignore[assignment]
    return Worker(settings, app.state.session_factory, app.state.store, triton=triton), grpc


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def test_tracing_is_off_unless_the_otel_variables_ask() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_one_trace_from_upload_to_stored_findings(app, client, accounts, settings) -> None:
    EXPORTER.clear()
    case_id = await upload_chest(client, accounts["admin1"])
    worker, grpc = _worker(app, settings)
    assert await worker.run_once()

    spans = list(EXPORTER.get_finished_spans())
    upload = _one(spans, "POST /api/studies")
    ingest = _one(spans, "ingest http")
    job = _one(spans, "inference.job cxr")
    infer = _one(spans, "triton.infer cxr")
    results = _one(spans, "inference.store_results")
    assert {span.context.trace_id for span in spans} == {upload.context.trace_id}
    assert upload.parent is None and upload.kind == trace.SpanKind.SERVER
    assert ingest.parent is not None and ingest.parent.span_id == upload.context.span_id
    assert job.parent is not None and job.parent.span_id == ingest.context.span_id
    assert infer.parent is not None and infer.parent.span_id == job.context.span_id
    assert results.parent is not None and results.parent.span_id == job.context.span_id
    audits = [span for span in spans if span.name == "audit.append"]
    under = {span.attributes["audit.action"]: span.parent.span_id for span in audits if span.parent}
    assert under["study.ingested"] == ingest.context.span_id
    assert under["inference.completed"] == results.context.span_id
    # Span attributes: ids, model and version, never PHI.
    assert job.attributes["medvision.case_id"] == case_id
    assert results.attributes["medvision.model"] == "cxr"
    assert results.attributes["medvision.model_version"] == "cxr-7 (test)"
    text = repr([dict(span.attributes or {}) for span in spans])
    assert "Synthetic" not in text and "SYNTH-CXR" not in text
    # Triton receives the client span's context as a W3C traceparent in the gRPC metadata.
    trace_id = format(infer.context.trace_id, "032x")
    span_id = format(infer.context.span_id, "016x")
    assert len(grpc.headers) == 1 and grpc.headers[0] is not None
    assert grpc.headers[0]["traceparent"] == f"00-{trace_id}-{span_id}-01"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_dicom_batch_starts_the_trace_its_job_continues(app, client, settings) -> None:
    """The DICOM listener calls IngestService(source="dimse") outside any request: the
    ingest span is the root, and the worker's job continues it."""
    from control.domain.audit.chain import Actor
    from control.domain.studies.service import IngestService
    from tests.fixtures.dx import chest_dx

    EXPORTER.clear()
    async with app.state.session_factory() as session:
        service = IngestService(session, app.state.store, settings, source="dimse")
        result, rejected = await service.ingest_each(
            [("1.dcm", chest_dx(64, seed=5))], Actor("pacs", "integration")
        )
    assert not rejected and result.queued_anything
    worker, _grpc = _worker(app, settings)
    assert await worker.run_once()
    spans = list(EXPORTER.get_finished_spans())
    ingest = _one(spans, "ingest dimse")
    job = _one(spans, "inference.job cxr")
    assert ingest.parent is None and ingest.attributes["medvision.source"] == "dimse"
    assert job.context.trace_id == ingest.context.trace_id
    assert job.parent is not None and job.parent.span_id == ingest.context.span_id


class OtlpJsonReceiver:
    """A minimal OTLP/HTTP receiver (Triton exports JSON to ``/v1/traces``) keeping spans."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                for resource in json.loads(body).get("resourceSpans", []):
                    for scope in resource.get("scopeSpans", []):
                        receiver.spans.extend(scope.get("spans", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced_triton(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, OtlpJsonReceiver]]:
    """A real tritonserver (tiny test networks) exporting its own OpenTelemetry spans."""
    from control.triton.server import (
        TritonServer,
        TritonStartError,
        find_triton_install,
        free_triton_ports,
    )

    try:
        find_triton_install()
    except TritonStartError as exc:
        pytest.skip(f"tritonserver binary not available: {exc.message}")
    from tests.fixtures.triton_repo import build_tiny_repository

    repository = build_tiny_repository(tmp_path_factory.mktemp("traced") / "model_repository")
    receiver = OtlpJsonReceiver()
    server = TritonServer(
        repository,
        **free_triton_ports(),
        extra_args=[
            "--trace-config=mode=opentelemetry",
            f"--trace-config=opentelemetry,url=127.0.0.1:{receiver.port}/v1/traces",
            # Only requests that arrive with a propagated context are traced (all of ours).
            "--trace-config=rate=0",
            "--trace-config=count=-1",
            "--trace-config=level=TIMESTAMPS",
            "--trace-config=opentelemetry,bsp_schedule_delay=100",
        ],
    )
    server.start()
    try:
        yield server, receiver
    finally:
        server.stop()
        receiver.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_tritons_own_spans_join_the_upload_trace(
    app, client, accounts, settings, traced_triton
) -> None:
    server, receiver = traced_triton
    EXPORTER.clear()
    await upload_chest(client, accounts["admin1"])
    triton = TritonClient(server.url_grpc, timeout_s=60)
    worker = Worker(settings, app.state.session_factory, app.state.store, triton=triton)
    try:
        assert await worker.run_once()
    finally:
        await triton.close()
    spans = list(EXPORTER.get_finished_spans())
    upload = _one(spans, "POST /api/studies")
    infer = _one(spans, "triton.infer cxr")
    trace_id = format(upload.context.trace_id, "032x")
    deadline = time.monotonic() + 30
    while not any(s["name"] == "InferRequest" for s in receiver.spans):
        assert time.monotonic() < deadline, "Triton exported no InferRequest span"
        await asyncio.sleep(0.2)
    request = next(s for s in receiver.spans if s["name"] == "InferRequest")
    assert request["traceId"] == trace_id
    assert request["parentSpanId"] == format(infer.context.span_id, "016x")
    ensemble = [s for s in receiver.spans if s["name"] == "cxr" and s["traceId"] == trace_id]
    assert ensemble and ensemble[0]["parentSpanId"] == request["spanId"]


def test_the_otel_variables_send_spans_to_an_otlp_collector(tmp_path) -> None:
    """A process configured only by OTEL_* exports over OTLP/gRPC (to a receiver built on
    the OTLP protocol's own generated service here, standing in for a collector)."""
    import subprocess
    import sys
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    script = (
        "from opentelemetry import trace\n"
        "from control.observability.tracing import configure_tracing, tracer\n"
        "assert configure_tracing('medvision-control')\n"
        "with tracer().start_as_current_span('ingest http'):\n"
        "    pass\n"
        "trace.get_tracer_provider().shutdown()\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop(grace=None)
    assert done.returncode == 0, done.stderr
    spans = [
        (resource.resource, span.name)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [name for _resource, name in spans] == ["ingest http"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert attributes["service.name"] == "medvision-control"
    assert attributes["deployment.environment"] == "test"
