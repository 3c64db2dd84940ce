"""One trace from an upload to stored findings, recorded with the SDK's in-memory exporter.

The upload goes through the real app (HTTP span, ingest, audit, the queued job keeps the
trace context); a real :class:`~control.worker.Worker` claims the job and runs the real
:class:`TritonClient` code down to its gRPC stub, which is replaced by a recorder of the
metadata it is given (no Triton server here: the ``traceparent`` it would receive is checked
instead).
"""

from __future__ import annotations

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
from tests.observability.helpers import upload_chest

LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
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
    grpc = RecordingGrpc()
    triton = TritonClient("127.0.0.1:1", use_shared_memory=False)
    triton._client = grpc  # type: ignore[assignment]
    worker = Worker(settings, app.state.session_factory, app.state.store, triton=triton)
    assert await worker.run_once()

    spans = list(EXPORTER.get_finished_spans())
    upload = _one(spans, "POST /api/studies")
    job = _one(spans, "inference.job cxr")
    infer = _one(spans, "triton.infer cxr")
    results = _one(spans, "inference.store_results")
    assert {span.context.trace_id for span in spans} == {upload.context.trace_id}
    assert upload.parent is None and upload.kind == trace.SpanKind.SERVER
    assert job.parent is not None and job.parent.span_id == upload.context.span_id
    assert infer.parent is not None and infer.parent.span_id == job.context.span_id
    assert results.parent is not None and results.parent.span_id == job.context.span_id
    audits = [span for span in spans if span.name == "audit.append"]
    under = {span.attributes["audit.action"]: span.parent.span_id for span in audits if span.parent}
    assert under["study.ingested"] == upload.context.span_id
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
    assert grpc.headers[0]["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
