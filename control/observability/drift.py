"""Model drift: recent inferences of a model version compared with its validation reference.

Method (docs/monitoring.md): for every feature of the reference (per-label probabilities or
region volumes, and input statistics, see :mod:`export.drift_reference`) the last
``window`` findings of the model version are compared with the validation data by

* PSI, the population stability index, over the reference's decile bins:
  ``sum((o - r) * ln(o / r))`` with the observed and reference shares ``o``, ``r``
  (floored at :data:`PSI_EPSILON`). Below 0.1 is stable, 0.1-0.2 moderate, above 0.2 a
  significant shift (the alert threshold, ``MEDVISION_DRIFT_PSI_THRESHOLD``);
* the two-sample Kolmogorov-Smirnov statistic (scipy) against the reference's 101-quantile
  sketch (the sketch adds at most 0.01 of error).

The inputs are what each finding recorded when it was made (``probabilities``,
``volumes_ml`` and ``input_stats``), so nothing is re-read from the object store. References
are read from the Triton model repository (``MEDVISION_MODEL_REPOSITORY``): the network's
``drift_reference.json`` and those kept in its version folders, indexed by model version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Finding
from control.served.registry import SERVED_MODELS
from export.drift_reference import FILENAME, output_features, read_reference

#: Served ensembles and the network whose repository folder holds their references.
MODEL_NETWORKS = {name: model.contract.network for name, model in SERVED_MODELS.items()}
#: Shares below this are floored so that an empty bin does not make PSI infinite.
PSI_EPSILON = 1e-4


def psi(edges: Sequence[float], proportions: Sequence[float], values: Sequence[float]) -> float:
    """Population stability index of ``values`` against reference bins (``edges`` are the
    inner bin boundaries, ``proportions`` the reference share of each of the len+1 bins)."""
    observed = np.asarray(values, dtype=np.float64)
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), observed, side="left"),
        minlength=len(edges) + 1,
    )
    o = np.maximum(counts / max(observed.size, 1), PSI_EPSILON)
    r = np.maximum(np.asarray(proportions, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((o - r) * np.log(o / r)))


def ks_statistic(reference_quantiles: Sequence[float], values: Sequence[float]) -> float:
    """The two-sample KS statistic between ``values`` and the reference quantile sketch."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(values, float), np.asarray(reference_quantiles, float))
    return float(result.statistic)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's shift: PSI, KS statistic, and how many values each side had."""

    feature: str
    psi: float
    ks: float
    n_window: int
    n_reference: int


@dataclass
class DriftReport:
    """The drift of one model version. ``status``: ``ok``, ``drift`` (a feature's PSI above
    the threshold), ``no_reference`` or ``insufficient_data`` (fewer than the minimum)."""

    model: str
    model_version: str
    status: str
    window: int
    n: int
    features: list[FeatureDrift] = field(default_factory=list)


class ReferenceIndex:
    """The drift references in a model repository, by (model, model version), re-read when a
    file changes."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self._seen: dict[Path, float] = {}
        self._references: dict[tuple[str, str], dict[str, Any]] = {}

    def _files(self, network: str) -> list[Path]:
        folder = self.repository / network
        if not folder.is_dir():
            return []
        files = [folder / FILENAME, *sorted(folder.glob(f"*/{FILENAME}"))]
        return [path for path in files if path.is_file()]

    def get(self, model: str, model_version: str) -> dict[str, Any] | None:
        """The reference of ``model`` (``cxr``, ``brats``) at ``model_version``, or None."""
        network = MODEL_NETWORKS.get(model)
        if network is None:
            return None
        for path in self._files(network):
            mtime = path.stat().st_mtime
            if self._seen.get(path) != mtime:
                self._seen[path] = mtime
                reference = read_reference(path)
                if reference is not None:
                    self._references[(model, str(reference["model_version"]))] = reference
        return self._references.get((model, model_version))


def finding_features(
    probabilities: Mapping[str, float] | None,
    volumes_ml: Mapping[str, float] | None,
    input_stats: Mapping[str, float] | None,
) -> dict[str, float]:
    """The feature values one stored finding contributes to the window."""
    return {**output_features(probabilities, volumes_ml), **(input_stats or {})}


def compare(
    reference: Mapping[str, Any], samples: Sequence[Mapping[str, float]]
) -> list[FeatureDrift]:
    """PSI and KS per reference feature over ``samples`` (features without values skipped)."""
    results = []
    for name, ref in sorted(reference["features"].items()):
        values = [s[name] for s in samples if name in s and math.isfinite(s[name])]
        if not values:
            continue
        results.append(
            FeatureDrift(
                feature=name,
                psi=round(psi(ref["edges"], ref["proportions"], values), 6),
                ks=round(ks_statistic(ref["quantiles"], values), 6),
                n_window=len(values),
                n_reference=int(ref["n"]),
            )
        )
    return results


async def recent_versions(session: AsyncSession, model: str, limit: int = 20) -> list[str]:
    """The model versions of ``model`` that have findings, most recently used first (at most
    ``limit``: older versions no longer serve and their drift no longer matters)."""
    last_used = func.max(Finding.created_at)
    rows = await session.execute(
        select(Finding.model_version, last_used)
        .where(Finding.model_name == model)
        .group_by(Finding.model_version)
        .order_by(last_used.desc())
        .limit(limit)
    )
    return [version for version, _last in rows]


async def window_samples(
    session: AsyncSession, model: str, model_version: str, window: int
) -> list[dict[str, float]]:
    """Feature dicts of the ``window`` most recent findings of ``model`` at ``model_version``."""
    rows = await session.execute(
        select(Finding.probabilities, Finding.volumes_ml, Finding.input_stats)
        .where(Finding.model_name == model, Finding.model_version == model_version)
        .order_by(Finding.created_at.desc())
        .limit(window)
    )
    return [finding_features(p, v, i) for p, v, i in rows]


async def drift_reports(
    session: AsyncSession,
    references: ReferenceIndex,
    model: str,
    *,
    window: int,
    min_samples: int,
    psi_threshold: float,
) -> list[DriftReport]:
    """A report per model version of ``model`` that has findings, newest version first."""
    reports = []
    for version in await recent_versions(session, model):
        samples = await window_samples(session, model, version, window)
        reference = references.get(model, version)
        if reference is None:
            reports.append(DriftReport(model, version, "no_reference", window, len(samples)))
            continue
        if len(samples) < min_samples:
            reports.append(DriftReport(model, version, "insufficient_data", window, len(samples)))
            continue
        features = compare(reference, samples)
        drifted = any(f.psi > psi_threshold for f in features)
        status = "drift" if drifted else "ok"
        reports.append(DriftReport(model, version, status, window, len(samples), features))
    return reports
