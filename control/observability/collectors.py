"""Figures the database knows, derived at scrape time by a prometheus_client collector.

Queue depth and age, findings, decisions, sign-off turnaround, drift and the audit chain's
state are read from the database (not counted in memory), so every process that serves
``/metrics`` reports the same truth, several API replicas agree, and nothing is lost when a
process restarts. Counters here (``medvision_findings_total``, ``medvision_decisions_total``)
are counts of rows, monotonic because findings and decisions are never deleted (a case's
deletion cascades; Prometheus's ``rate()`` treats the drop as a reset).

prometheus_client collectors are synchronous and the database is async, so
:meth:`DatabaseMetrics.refresh` (awaited by the ``/metrics`` handler) computes a snapshot,
at most once per ``MEDVISION_METRICS_REFRESH_S`` however many scrapers ask, and
:meth:`DatabaseMetrics.collect` yields it. The audit chain is verified on its own period
(``MEDVISION_AUDIT_VERIFY_INTERVAL_S``): walking the whole chain per scrape would be too dear.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.models import Case, Decision, Finding, InferenceJob, JobStatus
from control.observability.drift import MODEL_NETWORKS, ReferenceIndex, drift_reports
from control.served.registry import SERVED_MODELS
from control.storage import ObjectStore

logger = logging.getLogger("medvision.metrics")

#: Pipelines always reported (0 when idle), so that queue series exist before any job.
PIPELINES = tuple(SERVED_MODELS)
#: Sign-off turnaround buckets (seconds): from minutes for a STAT read to days.
TURNAROUND_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0,
                      86_400.0, 3 * 86_400.0, 7 * 86_400.0)  # fmt: skip
#: Label of a finding (or of the decisions on it) with no positive label.
NO_LABEL = "none"


def _labels_of(text: str | None) -> list[str]:
    import json

    try:
        labels = json.loads(text or "[]")
    except ValueError:
        return [NO_LABEL]
    return [str(label) for label in labels] or [NO_LABEL]


def _seconds(start: datetime, end: datetime) -> float:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max((end - start).total_seconds(), 0.0)


class DatabaseMetrics(Collector):
    """A collector of the database-derived metrics; :meth:`refresh` before each exposition."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        store: ObjectStore,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.store = store
        self.references = ReferenceIndex(settings.model_repository)
        self._families: list[Metric] = []
        self._refreshed_at = float("-inf")
        self._lock = asyncio.Lock()
        #: 1 intact, 0 broken, None until the first verification finished.
        self.audit_chain_ok: float | None = None
        #: A registry of its own: these series never mix with a process's in-memory ones.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The last snapshot's families and the audit chain gauge."""
        yield from self._families
        if self.audit_chain_ok is not None:
            gauge = GaugeMetricFamily(
                "medvision_audit_chain_ok",
                "1 when the last periodic verification found the audit chain intact, else 0",
            )
            gauge.add_metric([], self.audit_chain_ok)
            yield gauge

    async def refresh(self, *, force: bool = False) -> None:
        """Recompute the snapshot unless it is younger than the refresh period.

        A database failure is logged and the previous snapshot kept (the scrape still works:
        a stale gauge beats a failed scrape that fires every alert at once).
        """
        async with self._lock:
            now = time.monotonic()
            if not force and now - self._refreshed_at < self.settings.metrics_refresh_s:
                return
            try:
                async with self.session_factory() as session:
                    self._families = [family async for family in self._compute(session)]
                self._refreshed_at = now
            except Exception:
                logger.exception("database metrics could not be refreshed")

    async def _compute(self, session: AsyncSession) -> AsyncIterator[Metric]:
        yield await self._queue(session)
        for family in await self._queue_age(session):
            yield family
        yield await self._findings(session)
        yield await self._decisions(session)
        yield await self._turnaround(session)
        for family in await self._drift(session):
            yield family

    async def _queue(self, session: AsyncSession) -> Metric:
        depth = dict.fromkeys(PIPELINES, 0)
        rows = await session.execute(
            select(InferenceJob.pipeline, func.count())
            .where(InferenceJob.status.in_((JobStatus.PENDING, JobStatus.RUNNING)))
            .group_by(InferenceJob.pipeline)
        )
        for pipeline, count in rows:
            depth[pipeline] = int(count)
        family = GaugeMetricFamily(
            "medvision_jobs_queue_depth",
            "Inference jobs not finished (pending, retry waits included, or running)",
            labels=["pipeline"],
        )
        for pipeline, count in sorted(depth.items()):
            family.add_metric([pipeline], count)
        return family

    async def _queue_age(self, session: AsyncSession) -> list[Metric]:
        now = datetime.now(UTC)
        ages = dict.fromkeys(PIPELINES, 0.0)
        rows = await session.execute(
            select(InferenceJob.pipeline, func.min(InferenceJob.available_at))
            .where(InferenceJob.status == JobStatus.PENDING, InferenceJob.available_at <= now)
            .group_by(InferenceJob.pipeline)
        )
        for pipeline, oldest in rows:
            if oldest is not None:
                ages[pipeline] = _seconds(oldest, now)
        family = GaugeMetricFamily(
            "medvision_jobs_oldest_due_age_seconds",
            "How long the oldest due pending job has waited for a worker (0: none waits)",
            labels=["pipeline"],
        )
        for pipeline, age in sorted(ages.items()):
            family.add_metric([pipeline], age)
        return [family]

    async def _findings(self, session: AsyncSession) -> Metric:
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        labels_text = cast(Finding.labels, String)
        rows = await session.execute(
            select(Finding.model_name, Finding.model_version, labels_text, func.count()).group_by(
                Finding.model_name, Finding.model_version, labels_text
            )
        )
        for model, version, labels, count in rows:
            for label in _labels_of(labels):
                counts[(model, version, label)] += int(count)
        family = CounterMetricFamily(
            "medvision_findings",
            "AI findings stored, by model, model version and positive label ('none': no "
            "positive label; a segmentation's labels are its non-empty regions)",
            labels=["model", "version", "label"],
        )
        for key, count in sorted(counts.items()):
            family.add_metric(list(key), count)
        return family

    async def _decisions(self, session: AsyncSession) -> Metric:
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        labels_text = cast(Finding.labels, String)
        rows = await session.execute(
            select(Finding.model_name, labels_text, Decision.action, func.count())
            .join(Finding, Finding.id == Decision.finding_id)
            .group_by(Finding.model_name, labels_text, Decision.action)
        )
        for model, labels, action, count in rows:
            for label in _labels_of(labels):
                counts[(model, label, str(action))] += int(count)
        family = CounterMetricFamily(
            "medvision_decisions",
            "Radiologist decisions on AI findings by model, the finding's AI label and action "
            "(accept, reject, edit); rejections and edits over all decisions is the AI-reader "
            "disagreement rate",
            labels=["model", "label", "action"],
        )
        for key, count in sorted(counts.items()):
            family.add_metric(list(key), count)
        return family

    async def _turnaround(self, session: AsyncSession) -> Metric:
        rows = await session.execute(
            select(Case.pipeline, Case.created_at, Case.signed_off_at).where(
                Case.signed_off_at.is_not(None)
            )
        )
        by_pipeline: dict[str, list[float]] = defaultdict(list)
        for pipeline, created, signed in rows:
            by_pipeline[pipeline or NO_LABEL].append(_seconds(created, signed))
        family = HistogramMetricFamily(
            "medvision_signoff_turnaround_seconds",
            "Time from a case's creation (its first image received) to its sign-off",
            labels=["pipeline"],
        )
        for pipeline in sorted(set(PIPELINES) | set(by_pipeline)):
            values = by_pipeline.get(pipeline, [])
            buckets = [(str(b), float(sum(v <= b for v in values))) for b in TURNAROUND_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            family.add_metric([pipeline], buckets, sum_value=float(sum(values)))
        return family

    async def _drift(self, session: AsyncSession) -> list[Metric]:
        psi_family = GaugeMetricFamily(
            "medvision_drift_psi",
            "Population stability index of a feature over the recent-inference window of a "
            "model version against its validation reference (above 0.2: significant drift)",
            labels=["model", "version", "feature"],
        )
        ks_family = GaugeMetricFamily(
            "medvision_drift_ks",
            "Two-sample Kolmogorov-Smirnov statistic of the same window and reference",
            labels=["model", "version", "feature"],
        )
        for model in MODEL_NETWORKS:
            reports = await drift_reports(
                session,
                self.references,
                model,
                window=self.settings.drift_window,
                min_samples=self.settings.drift_min_samples,
                psi_threshold=self.settings.drift_psi_threshold,
            )
            for report in reports:
                for feature in report.features:
                    labels = [model, report.model_version, feature.feature]
                    psi_family.add_metric(labels, feature.psi)
                    ks_family.add_metric(labels, feature.ks)
        return [psi_family, ks_family]

    async def verify_audit(self) -> bool:
        """Verify the audit chain against the latest signed checkpoint; set the gauge."""
        from control.domain.audit.checkpoints import verify_with_checkpoint

        async with self.session_factory() as session:
            report = await verify_with_checkpoint(session, self.store)
        self.audit_chain_ok = 1.0 if report.ok else 0.0
        if not report.ok:
            logger.error("audit chain verification failed at entry %s", report.first_broken)
        return report.ok

    async def run_audit_verification(self, stop: asyncio.Event) -> None:
        """Verify the audit chain now and every ``audit_verify_interval_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.verify_audit()
            except Exception:
                logger.exception("periodic audit verification could not run")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.audit_verify_interval_s)
            except TimeoutError:
                continue
