"""Observation of inference jobs in the worker: the job's span (continuing the trace that
queued it), its duration and attempt metrics, and the span of its result transaction."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace

from control.domain.jobs.queue import ClaimedJob
from control.observability import tracing
from control.observability.metrics import JOB_ATTEMPTS, JOB_DURATION


@dataclass
class JobObservation:
    """What the worker tells the job's span and metrics: how the attempt ended."""

    span: trace.Span
    #: done, discarded (another run finished first), retry, failed, taken_over, error
    outcome: str = "error"


@contextmanager
def job_span(claimed: ClaimedJob, trace_context: str | None) -> Iterator[JobObservation]:
    """A consumer span for one job attempt, child of the span that queued the job; on exit
    the attempt's duration and outcome are recorded in the job metrics."""
    started = time.perf_counter()
    with tracing.tracer().start_as_current_span(
        f"inference.job {claimed.pipeline}",
        context=tracing.job_context(trace_context),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            tracing.JOB_ID: str(claimed.id),
            tracing.CASE_ID: str(claimed.case_id),
            tracing.PIPELINE: claimed.pipeline,
            "medvision.attempt": claimed.attempt,
        },
    ) as span:
        observation = JobObservation(span)
        try:
            yield observation
        finally:
            span.set_attribute("medvision.outcome", observation.outcome)
            if observation.outcome in ("failed", "error"):
                span.set_status(trace.StatusCode.ERROR)
            JOB_DURATION.labels(claimed.pipeline, observation.outcome).observe(
                time.perf_counter() - started
            )
            JOB_ATTEMPTS.labels(claimed.pipeline, observation.outcome).inc()


@contextmanager
def results_span(claimed: ClaimedJob, models: Sequence[tuple[str, str]]) -> Iterator[trace.Span]:
    """The span of the transaction storing a job's findings; ``models`` are the (model,
    version) pairs of its drafts."""
    attributes: dict[str, str | int] = {
        tracing.JOB_ID: str(claimed.id),
        tracing.CASE_ID: str(claimed.case_id),
        "medvision.findings": len(models),
    }
    if models:
        attributes[tracing.MODEL] = models[0][0]
        attributes[tracing.MODEL_VERSION] = models[0][1]
    with tracing.tracer().start_as_current_span(
        "inference.store_results", attributes=attributes
    ) as span:
        yield span
