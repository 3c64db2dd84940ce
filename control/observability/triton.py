"""Observation of Triton calls: a client span whose context rides in the gRPC metadata, and
the latency histogram ``medvision_triton_request_duration_seconds``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

from control.observability import tracing
from control.observability.metrics import TRITON_REQUEST_DURATION


@contextmanager
def triton_call(model: str) -> Iterator[trace.Span]:
    """Span ``triton.infer <model>`` (gRPC client) around one inference call, retries
    included, and its latency observed under ``model``. Inside it,
    :func:`control.observability.tracing.grpc_trace_headers` gives the metadata that makes
    Triton's own trace a child of this span."""
    started = time.perf_counter()
    with tracing.tracer().start_as_current_span(
        f"triton.infer {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": "inference.GRPCInferenceService",
            "rpc.method": "ModelInfer",
            tracing.MODEL: model,
        },
    ) as span:
        try:
            yield span
        finally:
            TRITON_REQUEST_DURATION.labels(model).observe(time.perf_counter() - started)
