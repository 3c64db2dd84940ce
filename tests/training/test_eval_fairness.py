"""Subgroup fairness: a planted weak subgroup is found, small and unknown groups are reported."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.fairness import classification_fairness, segmentation_fairness

LABELS = ("a", "b", "c")


def _planted(seed: int = 0):
    """Groups A (clean scores), B (noisy scores), C (5 samples) and 20 unknowns."""
    rng = np.random.default_rng(seed)
    group = np.array(["A"] * 300 + ["B"] * 300 + ["C"] * 5 + [None] * 20, dtype=object)
    n = group.size
    y = (rng.random((n, len(LABELS))) < 0.4).astype(float)
    noise = np.where(group == "B", 3.0, 0.7)[:, None]
    score = 1 / (1 + np.exp(-(2 * y - 1 + noise * rng.normal(size=y.shape))))
    return y, score, list(group)


def test_planted_weak_subgroup_is_found_and_flagged() -> None:
    y, score, group = _planted()
    result = classification_fairness(
        y, score, None, np.full(3, 0.5), {"sex": group}, LABELS, min_group_size=30, n_boot=50
    )
    sex = result["attributes"]["sex"]
    a, b = sex["groups"]["A"], sex["groups"]["B"]
    assert a["status"] == b["status"] == "ok"
    assert a["n"] == b["n"] == 300
    assert b["mean_auroc"] < a["mean_auroc"] - 0.1
    assert a["mean_auroc_ci_low"] <= a["mean_auroc"] <= a["mean_auroc_ci_high"]
    assert b["mean_tpr"] < a["mean_tpr"]
    assert set(b["per_label"]) == set(LABELS) and 0 <= b["per_label"]["a"]["fpr"] <= 1
    assert b["ece"] is not None
    gap = sex["largest_gap"]["mean_auroc"]
    assert gap["between"] == ["A", "B"] and gap["value"] == pytest.approx(
        a["mean_auroc"] - b["mean_auroc"]
    )
    assert "mean_auroc" in [flag["metric"] for flag in sex["flags"]]
    assert sex["compared_groups"] == ["A", "B"]


def test_small_and_unknown_groups_are_reported_not_dropped() -> None:
    y, score, group = _planted()
    result = classification_fairness(
        y, score, None, np.full(3, 0.5), {"sex": group}, LABELS, min_group_size=30, n_boot=20
    )
    sex = result["attributes"]["sex"]
    assert sex["groups"]["C"] == {"status": "too_small", "n": 5}
    assert sex["too_small"] == [{"group": "C", "n": 5}]
    assert sex["groups"]["unknown"] == {"status": "unknown", "n": 20}
    assert sex["unknown_n"] == 20
    assert "C" not in sex["compared_groups"] and "unknown" not in sex["compared_groups"]
    assert sum(g["n"] for g in sex["groups"].values()) == len(group)


def test_no_flag_when_groups_are_alike_and_thresholds_configurable() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((800, 3)) < 0.4).astype(float)
    score = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=y.shape))))
    groups = {"age_band": ["20-40" if i % 2 else "40-60" for i in range(800)]}
    result = classification_fairness(y, score, None, [0.5] * 3, groups, LABELS, n_boot=20)
    age = result["attributes"]["age_band"]
    assert [f["metric"] for f in age["flags"] if f["metric"] == "mean_auroc"] == []
    strict = classification_fairness(
        y, score, None, [0.5] * 3, groups, LABELS, n_boot=20, gap_thresholds={"mean_auroc": 0.0}
    )
    assert "mean_auroc" in [f["metric"] for f in strict["attributes"]["age_band"]["flags"]]


def test_single_comparable_group_has_no_gap() -> None:
    y, score, group = _planted()
    only_a = ["A" if g == "A" else None for g in group]
    result = classification_fairness(y, score, None, [0.5] * 3, {"race": only_a}, LABELS, n_boot=10)
    race = result["attributes"]["race"]
    assert race["largest_gap"]["mean_auroc"] is None and race["flags"] == []
    assert race["groups"]["unknown"]["status"] == "unknown"
    assert "mean_auroc" in race["groups"]["unknown"]  # large enough to describe, not compared


def test_group_length_must_match() -> None:
    y, score, _ = _planted()
    with pytest.raises(ValueError, match="values for"):
        classification_fairness(y, score, None, [0.5] * 3, {"sex": ["A"]}, LABELS)


def test_segmentation_fairness() -> None:
    rng = np.random.default_rng(1)
    cases, sexes = [], []
    for i in range(50):
        sex = ["F", "M", None][i % 3] if i < 48 else "X"
        base = 0.85 if sex == "F" else 0.65
        cases.append(
            {
                region: {"dice": base + 0.01 * rng.normal(), "hd95": 3.0 if sex == "F" else 12.0}
                for region in ("ET", "TC", "WT")
            }
        )
        sexes.append(sex)
    cases[0]["ET"] = {"dice": 0.0, "hd95": None, "reason": "prediction empty"}
    result = segmentation_fairness(cases, {"sex": sexes}, min_group_size=10)
    sex = result["attributes"]["sex"]
    assert sex["groups"]["X"] == {"status": "too_small", "n": 2}
    assert sex["groups"]["F"]["per_region"]["ET"]["hd95_n_undefined"] == 1
    assert sex["largest_gap"]["dice_WT"]["between"] == ["F", "M"]
    assert sex["largest_gap"]["hd95_WT"]["between"] == ["M", "F"]
    flagged = {f["metric"] for f in sex["flags"]}
    assert {"mean_dice", "dice_WT", "hd95_WT"} <= flagged
    assert sex["groups"]["unknown"]["status"] == "unknown"
