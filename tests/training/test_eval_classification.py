"""Classification metrics: AUROC with CIs, thresholds, rates, calibration, ROC curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluation import classification
from training.evaluation.classification import (
    FALLBACK_THRESHOLD,
    auroc_with_ci,
    calibration_error,
    choose_thresholds,
    rates_at_threshold,
    roc_curves,
)
from training.labels import CXR_LABELS


def _random_problem(n: int, n_labels: int, seed: int, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < 0.3).astype(float)
    score = 1 / (1 + np.exp(-(rng.normal(size=(n, n_labels)) + signal * (2 * y - 1))))
    return y, score


def test_auroc_matches_sklearn_on_random_data() -> None:
    y, score = _random_problem(300, 4, seed=1)
    score = np.round(score, 2)  # ties too
    result = auroc_with_ci(y, score, None, ["a", "b", "c", "d"], n_boot=50)
    for i, name in enumerate("abcd"):
        assert result["per_label"][name]["auroc"] == pytest.approx(
            roc_auc_score(y[:, i], score[:, i])
        )
    expected_mean = np.mean([roc_auc_score(y[:, i], score[:, i]) for i in range(4)])
    assert result["mean_auroc"] == pytest.approx(expected_mean)
    assert result["per_label"]["a"]["n_pos"] + result["per_label"]["a"]["n_neg"] == 300


def test_ci_contains_estimate_and_narrows_with_more_samples() -> None:
    widths = []
    for n in (200, 3000):
        y, score = _random_problem(n, 2, seed=n)
        result = auroc_with_ci(y, score, None, ["a", "b"], n_boot=300, seed=3)
        for entry in result["per_label"].values():
            assert entry["ci_low"] <= entry["auroc"] <= entry["ci_high"]
        assert result["mean_ci_low"] <= result["mean_auroc"] <= result["mean_ci_high"]
        widths.append(result["mean_ci_high"] - result["mean_ci_low"])
    assert widths[1] < widths[0] / 2


def test_separable_label_and_label_without_positives() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((100, 3))
    y[:40, 0] = 1
    y[:, 2] = rng.random(100) < 0.5
    score = rng.random((100, 3))
    score[:40, 0] += 2.0  # label 0 perfectly separable; label 1 has no positives
    result = auroc_with_ci(y, score, None, ["sep", "none", "noise"], n_boot=100)
    assert result["per_label"]["sep"]["auroc"] == 1.0
    assert result["per_label"]["sep"]["ci_low"] == 1.0
    none = result["per_label"]["none"]
    assert none["auroc"] is None and "positive" in none["reason"] and none["n_pos"] == 0
    assert result["n_labels_excluded"] == 1 and result["excluded_labels"] == ["none"]
    noise = result["per_label"]["noise"]["auroc"]
    assert result["mean_auroc"] == pytest.approx((1.0 + noise) / 2)


def test_masked_entries_are_ignored() -> None:
    y, score = _random_problem(400, 3, seed=5)
    mask = np.random.default_rng(6).random(y.shape) < 0.7
    flipped = y.copy()
    flipped[~mask] = 1 - flipped[~mask]
    garbage = score.copy()
    garbage[~mask] = np.random.default_rng(7).random(int((~mask).sum()))
    first = auroc_with_ci(y, score, mask, ["a", "b", "c"], n_boot=100, seed=1)
    second = auroc_with_ci(flipped, garbage, mask, ["a", "b", "c"], n_boot=100, seed=1)
    assert first == second
    known = mask[:, 0]
    assert first["per_label"]["a"]["auroc"] == pytest.approx(
        roc_auc_score(y[known, 0], score[known, 0])
    )
    assert choose_thresholds(y, score, mask) == pytest.approx(
        choose_thresholds(flipped, garbage, mask)
    )


def test_bootstrap_resamples_are_computed_in_chunks_not_one_by_one(monkeypatch) -> None:
    # A per-resample loop takes minutes for 1000 resamples of 14 labels; chunks take ~1 s.
    # (Speed itself is a benchmark's business; this checks the structure that gives it.)
    calls = 0
    original = classification._weighted_auroc

    def counted(*args):
        nonlocal calls
        calls += 1
        return original(*args)

    monkeypatch.setattr(classification, "_weighted_auroc", counted)
    y, score = _random_problem(2000, len(CXR_LABELS), seed=2)
    result = auroc_with_ci(y, score, None, CXR_LABELS, n_boot=1000)
    assert result["n_labels_evaluated"] == 14
    assert 14 <= calls <= 14 * 10  # one call per label and chunk of resamples


def test_labels_must_match_columns() -> None:
    y, score = _random_problem(20, 2, seed=0)
    with pytest.raises(ValueError, match="label names"):
        auroc_with_ci(y, score, None, ["only-one"])


def test_youden_threshold_on_toy_case() -> None:
    # At 0.6: TPR 1, FPR 1/4 (J = 0.75); at 0.8: TPR 2/3, FPR 0 (J = 0.67); at 0.3: J = 0.5.
    y = np.array([[0], [0], [0], [0], [1], [1], [1]], dtype=float)
    score = np.array([[0.1], [0.2], [0.3], [0.7], [0.6], [0.8], [0.9]])
    assert choose_thresholds(y, score, None) == pytest.approx([0.6])


def test_sensitivity_threshold_reaches_target() -> None:
    y, score = _random_problem(1000, 3, seed=9, signal=0.7)
    cut = choose_thresholds(y, score, None, method="sensitivity", target_sensitivity=0.9)
    rates = rates_at_threshold(y, score, None, cut)
    assert np.all(rates["tpr"] >= 0.9)
    # The highest such threshold: a hair above it, sensitivity drops below the target.
    below = rates_at_threshold(y, score, None, cut + 1e-9)
    assert np.all(below["tpr"] < 0.9)


def test_threshold_fallback_for_single_class_label() -> None:
    y = np.zeros((10, 2))
    y[:5, 1] = 1
    score = np.linspace(0, 1, 20).reshape(10, 2)
    cut = choose_thresholds(y, score, None)
    assert cut[0] == FALLBACK_THRESHOLD


def test_rates_at_threshold_counts() -> None:
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], dtype=float)
    score = np.array([[0.9, 0.1], [0.4, 0.7], [0.6, 0.2], [0.1, 0.8]])
    mask = np.array([[1, 1], [1, 1], [1, 1], [1, 0]])
    rates = rates_at_threshold(y, score, mask, [0.5, 0.5])
    assert rates["tp"].tolist() == [1, 0]
    assert rates["fp"].tolist() == [1, 1]
    assert rates["tn"].tolist() == [1, 2]
    assert rates["fn"].tolist() == [1, 0]
    assert rates["tpr"][0] == 0.5 and np.isnan(rates["tpr"][1])
    assert rates["fpr"][1] == pytest.approx(1 / 3)
    assert rates["ppv"][0] == 0.5


def test_ece_zero_when_calibrated_and_positive_when_not() -> None:
    # 40 entries at 0.25 with 10 positives, 40 at 0.75 with 30: every bin calibrated.
    prob = np.array([0.25] * 40 + [0.75] * 40)[:, None]
    y = np.array([1] * 10 + [0] * 30 + [1] * 30 + [0] * 10, dtype=float)[:, None]
    ece, bins = calibration_error(y, prob, None, n_bins=10)
    assert ece == pytest.approx(0.0)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 80
    assert bins[2]["fraction_positive"] == pytest.approx(0.25)
    assert bins[0]["mean_confidence"] is None

    overconfident = np.where(prob > 0.5, 0.99, 0.01)
    worse, _ = calibration_error(y, overconfident, None)
    assert worse == pytest.approx(0.5 * 0.24 + 0.5 * 0.24)


def test_roc_curves_per_label() -> None:
    y, score = _random_problem(200, 3, seed=4)
    y[:, 2] = 0
    curves = roc_curves(y, score, None, ["a", "b", "c"])
    assert set(curves) == {"a", "b"}
    fpr, tpr = curves["a"]
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    assert set(roc_curves(y, score, None)) == {"0", "1"}
