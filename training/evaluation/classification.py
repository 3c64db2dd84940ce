"""Multi-label classification metrics: AUROC with bootstrap CIs, thresholds, rates, calibration.

Every function takes ``y_true`` / ``y_score`` as ``[N, L]`` arrays and an optional ``mask``
``[N, L]`` marking the known entries (1 = label known, 0 = unknown/uncertain). Masked entries,
and entries whose target or score is not finite, are ignored everywhere. A target counts as
positive when it is >= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

# Threshold used for a label whose known entries lack a positive or a negative.
FALLBACK_THRESHOLD = 0.5
# Bootstrap multiplicities held in memory at once (resamples x rows).
_BOOT_CHUNK_CELLS = 4_000_000


def known_entries(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean ``[N, L]`` array: True where the entry is known (mask) and both values are finite."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(
            f"y_true and y_score must both be [N, L]; got {y_true.shape} and {y_score.shape}"
        )
    known = np.isfinite(y_true) & np.isfinite(y_score)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != y_true.shape:
            raise ValueError(f"mask must be {y_true.shape}; got {mask.shape}")
        known &= mask.astype(bool)
    return np.asarray(known, dtype=bool)


def _label_view(
    y_true: np.ndarray, y_score: np.ndarray, known: np.ndarray, label: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the known rows of one label, their binary targets and their scores."""
    rows = np.flatnonzero(known[:, label])
    targets = np.asarray(y_true, dtype=np.float64)[rows, label] >= 0.5
    scores = np.asarray(y_score, dtype=np.float64)[rows, label]
    return rows, targets, scores


def _weighted_auroc(weights: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``weights`` ``[B, n]`` (bootstrap counts), ties counted as one half.

    AUROC = sum over (positive i, negative j) of w_i w_j [s_i > s_j] (+ half on ties), divided by
    the total positive weight times the total negative weight; rows with no positive or no
    negative weight give NaN.
    """
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order].astype(np.float64)
    positive = targets[order]
    pos_w = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
    neg_w = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    numerator = np.sum(pos_w * (neg_below + 0.5 * neg_w), axis=1)
    denominator = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n]`` multiplicities of each sample in ``n_boot`` resamples with replacement."""
    draws = rng.integers(0, n, size=(n_boot, n))
    flat = draws + (np.arange(n_boot) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n).reshape(n_boot, n)


def auroc_with_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None,
    labels: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Per-label AUROC with percentile bootstrap CIs, and the mean over evaluable labels.

    Each label is scored only over its known entries. A label whose known entries lack a
    positive or a negative gets ``auroc`` None with a ``reason`` and is left out of the mean
    (``n_labels_excluded`` / ``excluded_labels`` say which). The bootstrap resamples whole
    rows (images/patients) with replacement, the same resample for every label, so the mean's
    CI reflects the correlation between labels; resamples where a label loses one class are
    skipped for that label. Returns ``{"per_label": {name: {"auroc", "ci_low", "ci_high",
    "n_pos", "n_neg"[, "reason"]}}, "mean_auroc", "mean_ci_low", "mean_ci_high",
    "n_labels_evaluated", "n_labels_excluded", "excluded_labels", "n_boot", "alpha"}``;
    ``mean_*`` are None when no label is evaluable.
    """
    known = known_entries(y_true, y_score, mask)
    n_rows, n_labels = known.shape
    if len(labels) != n_labels:
        raise ValueError(f"{len(labels)} label names for {n_labels} label columns")
    low_q, high_q = 100 * alpha / 2, 100 * (1 - alpha / 2)

    per_label: dict[str, dict[str, Any]] = {}
    evaluable: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    excluded: list[str] = []
    for index, name in enumerate(labels):
        rows, targets, scores = _label_view(y_true, y_score, known, index)
        n_pos, n_neg = int(targets.sum()), int((~targets).sum())
        entry: dict[str, Any] = {
            "auroc": None,
            "ci_low": None,
            "ci_high": None,
            "n_pos": n_pos,
            "n_neg": n_neg,
        }
        if n_pos == 0 or n_neg == 0:
            entry["reason"] = (
                "no positive known entries" if n_pos == 0 else "no negative known entries"
            )
            excluded.append(name)
        else:
            entry["auroc"] = float(roc_auc_score(targets, scores))
            evaluable.append((name, rows, targets, scores))
        per_label[name] = entry

    point_estimates = [per_label[name]["auroc"] for name, *_ in evaluable]
    result: dict[str, Any] = {
        "per_label": per_label,
        "mean_auroc": float(np.mean(point_estimates)) if point_estimates else None,
        "mean_ci_low": None,
        "mean_ci_high": None,
        "n_labels_evaluated": len(evaluable),
        "n_labels_excluded": len(excluded),
        "excluded_labels": excluded,
        "n_boot": n_boot,
        "alpha": alpha,
    }
    if not evaluable or n_boot <= 0:
        return result

    # Resamples in chunks bound memory to about _BOOT_CHUNK_CELLS counts at a time.
    boot = np.full((n_boot, len(evaluable)), np.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_CELLS // n_rows)
    for first in range(0, n_boot, chunk):
        counts = _bootstrap_counts(n_rows, min(chunk, n_boot - first), rng)
        for column, (_, rows, targets, scores) in enumerate(evaluable):
            boot[first : first + counts.shape[0], column] = _weighted_auroc(
                counts[:, rows], targets, scores
            )
    for column, (name, *_) in enumerate(evaluable):
        if np.isfinite(boot[:, column]).any():
            low, high = np.nanpercentile(boot[:, column], [low_q, high_q])
            per_label[name]["ci_low"], per_label[name]["ci_high"] = float(low), float(high)
    valid = np.isfinite(boot).any(axis=1)
    if valid.any():
        low, high = np.percentile(np.nanmean(boot[valid], axis=1), [low_q, high_q])
        result["mean_ci_low"], result["mean_ci_high"] = float(low), float(high)
    return result


def choose_thresholds(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None,
    *,
    method: Literal["youden", "sensitivity"] = "youden",
    target_sensitivity: float = 0.9,
) -> np.ndarray:
    """One operating threshold per label; a sample is called positive when ``score >= threshold``.

    ``"youden"`` maximises sensitivity + specificity - 1 (ties go to the highest threshold);
    ``"sensitivity"`` takes the highest threshold whose sensitivity is at least
    ``target_sensitivity`` (so the best specificity meeting the target). Labels whose known
    entries lack a positive or a negative get ``FALLBACK_THRESHOLD`` (0.5).
    """
    if method not in ("youden", "sensitivity"):
        raise ValueError(f"unknown threshold method {method!r}")
    known = known_entries(y_true, y_score, mask)
    thresholds = np.full(known.shape[1], FALLBACK_THRESHOLD, dtype=np.float64)
    for index in range(known.shape[1]):
        _, targets, scores = _label_view(y_true, y_score, known, index)
        if targets.all() or not targets.any():
            continue
        fpr, tpr, cut = roc_curve(targets, scores, drop_intermediate=False)
        # cut[0] is +inf (nothing called positive): never a useful operating point.
        fpr, tpr, cut = fpr[1:], tpr[1:], cut[1:]
        if method == "youden":
            chosen = int(np.argmax(tpr - fpr))
        else:
            chosen = int(np.argmax(tpr >= target_sensitivity))
        thresholds[index] = float(cut[chosen])
    return thresholds


def rates_at_threshold(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None,
    thresholds: np.ndarray | Sequence[float],
) -> dict[str, np.ndarray]:
    """Confusion counts and rates per label at ``score >= threshold``, over known entries.

    Returns ``{"tp", "fp", "tn", "fn"}`` (int ``[L]``) and ``{"tpr", "fpr", "ppv"}`` (float
    ``[L]``, NaN where the denominator is zero, e.g. TPR of a label without positives).
    """
    known = known_entries(y_true, y_score, mask)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (known.shape[1],):
        raise ValueError(f"thresholds must be [{known.shape[1]}]; got {thresholds.shape}")
    positive = np.nan_to_num(np.asarray(y_true, dtype=np.float64)) >= 0.5
    called = np.nan_to_num(np.asarray(y_score, dtype=np.float64), nan=-np.inf) >= thresholds
    tp = np.sum(known & positive & called, axis=0)
    fp = np.sum(known & ~positive & called, axis=0)
    tn = np.sum(known & ~positive & ~called, axis=0)
    fn = np.sum(known & positive & ~called, axis=0)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "tpr": ratio(tp, tp + fn),
        "fpr": ratio(fp, fp + tn),
        "ppv": ratio(tp, tp + fp),
    }


def calibration_error(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    mask: np.ndarray | None,
    n_bins: int = 10,
) -> tuple[float | None, list[dict[str, Any]]]:
    """Expected calibration error over all known (sample, label) entries, and its bins.

    Probabilities are pooled across labels into ``n_bins`` equal-width bins on [0, 1] (the last
    bin includes 1.0). ECE = sum over bins of (count / total) * |fraction positive - mean
    probability|. Each bin is ``{"lower", "upper", "count", "mean_confidence",
    "fraction_positive"}`` (the last two None for an empty bin): exactly what a reliability
    diagram plots. ECE is None when no entry is known.
    """
    known = known_entries(y_true, y_prob, mask)
    targets = (np.asarray(y_true, dtype=np.float64)[known] >= 0.5).astype(np.float64)
    probs = np.clip(np.asarray(y_prob, dtype=np.float64)[known], 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, n_bins - 1)
    bins: list[dict[str, Any]] = []
    ece = 0.0
    for b in range(n_bins):
        in_bin = which == b
        count = int(in_bin.sum())
        bin_info: dict[str, Any] = {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": count,
            "mean_confidence": None,
            "fraction_positive": None,
        }
        if count:
            confidence = float(probs[in_bin].mean())
            fraction = float(targets[in_bin].mean())
            bin_info["mean_confidence"] = confidence
            bin_info["fraction_positive"] = fraction
            ece += count / probs.size * abs(fraction - confidence)
        bins.append(bin_info)
    return (float(ece) if probs.size else None), bins


def roc_curves(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None,
    labels: Sequence[str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROC curve ``(fpr, tpr)`` per label over its known entries, keyed by label name.

    Keys are ``labels`` when given, else the column index as a string. Labels whose known
    entries lack a positive or a negative have no curve and are left out.
    """
    known = known_entries(y_true, y_score, mask)
    names = list(labels) if labels is not None else [str(i) for i in range(known.shape[1])]
    if len(names) != known.shape[1]:
        raise ValueError(f"{len(names)} label names for {known.shape[1]} label columns")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for index, name in enumerate(names):
        _, targets, scores = _label_view(y_true, y_score, known, index)
        if targets.all() or not targets.any():
            continue
        fpr, tpr, _ = roc_curve(targets, scores)
        curves[name] = (fpr, tpr)
    return curves
