"""Evaluation report: JSON without NaN, Markdown tables and banner, valid PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from training.evaluation.classification import (
    auroc_with_ci,
    calibration_error,
    choose_thresholds,
    rates_at_threshold,
    roc_curves,
)
from training.evaluation.fairness import classification_fairness, segmentation_fairness
from training.evaluation.report import SYNTHETIC_BANNER, json_safe, write_report

LABELS = ("Atelectasis", "Cardiomegaly", "Hernia")


def _cxr_inputs():
    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random((n, 3)) < 0.4).astype(float)
    y[:, 2] = 0  # Hernia: no positives -> excluded with a reason
    score = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=y.shape))))
    sex = ["F"] * 95 + ["M"] * 95 + ["X"] * 5 + [None] * 5
    cut = choose_thresholds(y, score, None)
    rates = rates_at_threshold(y, score, None, cut)
    ece, bins = calibration_error(y, score, None)
    metrics = {
        "classification": auroc_with_ci(y, score, None, LABELS, n_boot=50),
        "thresholds": {
            name: {
                "threshold": cut[i],
                "tpr": rates["tpr"][i],
                "fpr": rates["fpr"][i],
                "ppv": rates["ppv"][i],
            }
            for i, name in enumerate(LABELS)
        },
        "localization": {
            "pointing_game": {
                "accuracy": 0.5,
                "hits": 1,
                "total": 2,
                "per_label": {"Atelectasis": {"accuracy": 0.5, "hits": 1, "total": 2}},
            },
            "cam_iou": {
                "mean_iou": 0.4,
                "n": 2,
                "per_label": {"Atelectasis": {"mean_iou": 0.4, "n": 2}},
            },
        },
        "loss": float("nan"),
        "rates": rates,
    }
    fairness = classification_fairness(y, score, None, cut, {"sex": sex}, LABELS, n_boot=20)
    return metrics, fairness, roc_curves(y, score, None, LABELS), {"ece": ece, "bins": bins}


def _valid_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_cxr_report(tmp_path: Path) -> None:
    metrics, fairness, curves, calibration = _cxr_inputs()
    paths = write_report(
        tmp_path / "out",
        title="CXR evaluation",
        task="cxr",
        metrics=metrics,
        fairness=fairness,
        curves=curves,
        calibration=calibration,
        synthetic=True,
    )
    assert set(paths) == {"json", "markdown", "roc_curves", "reliability", "fairness_sex"}
    assert all(p.exists() for p in paths.values())

    text = paths["json"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    document = json.loads(text)
    assert document["synthetic"] is True
    assert document["metrics"]["loss"] is None
    assert document["metrics"]["classification"]["per_label"]["Hernia"]["auroc"] is None
    assert isinstance(document["metrics"]["rates"]["tpr"], list)

    markdown = paths["markdown"].read_text()
    assert SYNTHETIC_BANNER in markdown
    assert "| Atelectasis |" in markdown and "Hernia" in markdown
    assert "Too small to compare: X (n=5)" in markdown
    assert "too_small" in markdown and "Largest gap" in markdown
    assert "Pointing game accuracy" in markdown and "Threshold" in markdown
    assert "Expected calibration error" in markdown
    for key in ("roc_curves", "reliability", "fairness_sex"):
        _valid_png(paths[key])


def test_brats_report_without_optional_parts(tmp_path: Path) -> None:
    per_case = [
        {r: {"dice": 0.8 if i % 2 else 0.6, "hd95": 4.0 + i % 3} for r in ("ET", "TC", "WT")}
        for i in range(30)
    ]
    groups = {"age_band": ["40-60" if i % 2 else "60-80" for i in range(28)] + ["0-20", "0-20"]}
    fairness = segmentation_fairness(per_case, groups, min_group_size=10)
    metrics = {
        "segmentation": {
            "ET": {
                "dice": {"mean": 0.7, "median": 0.7, "std": 0.1, "n": 30},
                "hd95": {"mean": 5.0, "median": 5.0, "std": 0.8, "n": 30, "n_undefined": 0},
            },
        }
    }
    paths = write_report(
        tmp_path, title="BraTS", task="brats", metrics=metrics, fairness=fairness, synthetic=False
    )
    assert set(paths) == {"json", "markdown", "fairness_age_band"}
    markdown = paths["markdown"].read_text()
    assert SYNTHETIC_BANNER not in markdown
    assert "Dice mean" in markdown and "| ET |" in markdown
    assert "0-20 (n=2)" in markdown
    assert "**⚠ FLAG**" in markdown  # Dice gap 0.2 between the age bands
    _valid_png(paths["fairness_age_band"])
    json.loads(paths["json"].read_text())


def test_json_safe() -> None:
    value = {"a": np.array([1.0, np.nan]), "b": (np.int64(3), np.float32(np.inf)), 1: Path("x")}
    assert json_safe(value) == {"a": [1.0, None], "b": [3, None], "1": "x"}
    assert not math.isnan(json_safe(np.float64(0.5)))
