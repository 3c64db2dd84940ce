"""Evaluation reports: ``report.json``, a readable ``report.md`` and PNG plots in one folder.

``metrics`` keys this module knows how to render (others are kept in the JSON, and scalar
ones listed in the Markdown):

- ``"classification"``: the result of ``classification.auroc_with_ci``;
- ``"thresholds"``: ``{label: threshold}`` or ``{label: {"threshold", "tpr", "fpr", "ppv"}}``;
- ``"localization"``: ``{"pointing_game": pointing_game(...), "cam_iou": cam_box_iou(...)}``;
- ``"segmentation"``: the result of ``segmentation.summarise_cases``.

``fairness`` is the result of ``fairness.classification_fairness`` or
``fairness.segmentation_fairness``; ``curves`` is ``classification.roc_curves`` (``{label:
(fpr, tpr)}`` or ``{label: {"fpr", "tpr"}}``); ``calibration`` is ``{"ece", "bins"}`` with
the bins of ``classification.calibration_error``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from medvision_contract.served import SERVED_CONTRACTS

SYNTHETIC_BANNER = "SYNTHETIC DATA — not a clinical evaluation"


def json_safe(value: Any) -> Any:
    """``value`` with numpy types, tuples and paths made plain JSON; NaN and infinities → None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers rounded, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}" if math.isfinite(float(value)) else "–"
    return str(value).replace("|", "\\|")


def _ci(low: Any, high: Any) -> str:
    return "–" if low is None or high is None else f"{_fmt(low)}–{_fmt(high)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _classification_md(result: Mapping[str, Any]) -> list[str]:
    lines = ["## Classification: AUROC per label", ""]
    alpha = result.get("alpha", 0.05)
    rows = [
        [
            _fmt(name),
            _fmt(entry.get("auroc")),
            _ci(entry.get("ci_low"), entry.get("ci_high")),
            _fmt(entry.get("n_pos")),
            _fmt(entry.get("n_neg")),
            _fmt(entry.get("reason", "")),
        ]
        for name, entry in result.get("per_label", {}).items()
    ]
    rows.append(
        [
            "**mean**",
            f"**{_fmt(result.get('mean_auroc'))}**",
            _ci(result.get("mean_ci_low"), result.get("mean_ci_high")),
            "",
            "",
            f"{result.get('n_labels_excluded', 0)} label(s) excluded",
        ]
    )
    ci_name = f"{100 * (1 - float(alpha)):.0f}% CI"
    lines += _table(["Label", "AUROC", ci_name, "n+", "n−", "Note"], rows)
    excluded = result.get("excluded_labels") or []
    if excluded:
        lines += [f"Excluded from the mean (one class missing): {', '.join(excluded)}.", ""]
    return lines


def _thresholds_md(thresholds: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, entry in thresholds.items():
        info = entry if isinstance(entry, Mapping) else {"threshold": entry}
        rows.append(
            [_fmt(name)] + [_fmt(info.get(key)) for key in ("threshold", "tpr", "fpr", "ppv")]
        )
    header = ["Label", "Threshold", "TPR", "FPR", "PPV"]
    return ["## Operating thresholds", "", *_table(header, rows)]


def _localization_md(result: Mapping[str, Any]) -> list[str]:
    lines = ["## Localisation", ""]
    pointing = result.get("pointing_game") or {}
    iou = result.get("cam_iou") or {}
    lines += [
        f"Pointing game accuracy: **{_fmt(pointing.get('accuracy'))}** "
        f"({_fmt(pointing.get('hits'))}/{_fmt(pointing.get('total'))}); "
        f"mean CAM-box IoU: **{_fmt(iou.get('mean_iou'))}** (n={_fmt(iou.get('n'))}).",
        "",
    ]
    names = list(dict.fromkeys([*pointing.get("per_label", {}), *iou.get("per_label", {})]))
    rows = []
    for name in names:
        p = pointing.get("per_label", {}).get(name, {})
        i = iou.get("per_label", {}).get(name, {})
        rows.append(
            [
                _fmt(name),
                _fmt(p.get("accuracy")),
                f"{_fmt(p.get('hits'))}/{_fmt(p.get('total'))}",
                _fmt(i.get("mean_iou")),
            ]
        )
    if rows:
        lines += _table(["Label", "Pointing accuracy", "Hits/total", "Mean IoU"], rows)
    return lines


def _segmentation_md(summary: Mapping[str, Any]) -> list[str]:
    rows = []
    for region, entry in summary.items():
        dice, hd95 = entry.get("dice", {}), entry.get("hd95", {})
        rows.append(
            [
                _fmt(region),
                _fmt(dice.get("mean")),
                _fmt(dice.get("median")),
                _fmt(dice.get("std")),
                _fmt(hd95.get("mean"), 2),
                _fmt(hd95.get("median"), 2),
                _fmt(hd95.get("std"), 2),
                _fmt(dice.get("n")),
                _fmt(hd95.get("n_undefined")),
            ]
        )
    header = [
        "Region",
        "Dice mean",
        "Dice median",
        "Dice std",
        "HD95 mean (mm)",
        "HD95 median",
        "HD95 std",
        "Cases",
        "HD95 undefined",
    ]
    lines = ["## Segmentation: Dice and HD95 per region", "", *_table(header, rows)]
    return lines + _challenge_md(summary)


def _challenge_md(summary: Mapping[str, Any]) -> list[str]:
    """The BraTS 2023 challenge's figures beside ours, when the evaluation computed them."""
    rows = []
    for region, entry in summary.items():
        lesion_wise, challenge = entry.get("lesion_wise"), entry.get("hd95_challenge")
        if not lesion_wise and not challenge:
            continue
        lesion_wise = lesion_wise or {}
        rows.append(
            [
                _fmt(region),
                _fmt(lesion_wise.get("dice", {}).get("mean")),
                _fmt(lesion_wise.get("hd95", {}).get("mean"), 2),
                _fmt((challenge or {}).get("mean"), 2),
                _fmt(lesion_wise.get("true_positives")),
                _fmt(lesion_wise.get("false_negatives")),
                _fmt(lesion_wise.get("false_positives")),
            ]
        )
    if not rows:
        return []
    header = [
        "Region",
        "Lesion-wise Dice",
        "Lesion-wise HD95 (mm)",
        "HD95, empty = 374 mm",
        "Lesions found",
        "Lesions missed",
        "False positives",
    ]
    note = (
        "BraTS 2023 conventions (BraTS-GLI: 26-connected lesions merged and matched through a "
        "3-voxel dilation, lesions of 50 mm³ or less not scored, a missed lesion or false "
        "positive scores Dice 0 and HD95 374 mm; means over cases). The table above follows "
        "MONAI's: a case where one mask is empty has no HD95 and is left out of its mean."
    )
    return ["", "### The challenge's figures", "", note, "", *_table(header, rows)]


def _calibration_md(calibration: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Calibration",
        "",
        f"Expected calibration error: **{_fmt(calibration.get('ece'))}**",
        "",
    ]
    rows = [
        [
            f"{_fmt(b.get('lower'), 2)}–{_fmt(b.get('upper'), 2)}",
            _fmt(b.get("count")),
            _fmt(b.get("mean_confidence")),
            _fmt(b.get("fraction_positive")),
        ]
        for b in calibration.get("bins", [])
    ]
    if rows:
        lines += _table(["Bin", "Count", "Mean probability", "Fraction positive"], rows)
    return lines


def _fairness_md(fairness: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Fairness",
        "",
        f"Groups smaller than {fairness.get('min_group_size')} are reported as too small and "
        "not compared; unknown values are counted but not compared.",
        "",
    ]
    for attribute, result in fairness.get("attributes", {}).items():
        metric_names = list(result.get("largest_gap", {}))
        lines += [f"### {_fmt(attribute)}", ""]
        rows = []
        for group, entry in result.get("groups", {}).items():
            status = entry.get("status", "")
            cells = [
                _fmt(group),
                status if status == "ok" else f"**{status}**",
                _fmt(entry.get("n")),
            ]
            for metric in metric_names:
                cell = _fmt(entry.get(metric))
                if metric == "mean_auroc" and entry.get("mean_auroc_ci_low") is not None:
                    ci = _ci(entry.get("mean_auroc_ci_low"), entry.get("mean_auroc_ci_high"))
                    cell += f" ({ci})"
                cells.append(cell)
            rows.append(cells)
        lines += _table(["Group", "Status", "n", *metric_names], rows)
        too_small = result.get("too_small") or []
        if too_small:
            listed = ", ".join(f"{_fmt(t['group'])} (n={t['n']})" for t in too_small)
            lines += [f"Too small to compare: {listed}.", ""]
        flagged = {flag["metric"]: flag for flag in result.get("flags", [])}
        gap_rows = []
        for metric, gap in result.get("largest_gap", {}).items():
            if gap is None:
                gap_rows.append([metric, "–", "fewer than two comparable groups", ""])
                continue
            flag = flagged.get(metric)
            mark = f"**⚠ FLAG** (> {_fmt(flag['threshold'])})" if flag else "ok"
            between = " vs ".join(_fmt(g) for g in gap["between"])
            gap_rows.append([metric, _fmt(gap["value"]), between, mark])
        lines += _table(["Metric", "Largest gap", "Between (highest vs lowest)", "Flag"], gap_rows)
        if flagged:
            names = ", ".join(flagged)
            lines += [f"> **⚠ Flagged gaps for {_fmt(attribute)}: {names}.**", ""]
    return lines


def _other_scalars_md(metrics: Mapping[str, Any], known: set[str]) -> list[str]:
    rows = [
        [_fmt(key), _fmt(value)]
        for key, value in metrics.items()
        if key not in known and (value is None or isinstance(value, int | float | str | np.number))
    ]
    return ["## Other metrics", "", *_table(["Metric", "Value"], rows)] if rows else []


def _curve_arrays(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, Mapping):
        return np.asarray(curve["fpr"], dtype=float), np.asarray(curve["tpr"], dtype=float)
    fpr, tpr = curve
    return np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)


def _title(ax_title: str, synthetic: bool) -> str:
    return f"{ax_title}\n{SYNTHETIC_BANNER}" if synthetic else ax_title


def _plot_roc(
    path: Path, curves: Mapping[str, Any], metrics: Mapping[str, Any], synthetic: bool
) -> None:
    per_label = (metrics.get("classification") or {}).get("per_label", {})
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    colours = colormaps["tab20"]
    for index, (name, curve) in enumerate(curves.items()):
        fpr, tpr = _curve_arrays(curve)
        auroc = per_label.get(name, {}).get("auroc")
        label = f"{name} ({auroc:.3f})" if isinstance(auroc, float) else str(name)
        ax.plot(fpr, tpr, lw=1.2, color=colours((2 * index + index // 10) % 20), label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(_title("ROC curves per label", synthetic), fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_reliability(path: Path, calibration: Mapping[str, Any], synthetic: bool) -> None:
    bins = [b for b in calibration.get("bins", []) if b.get("count")]
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    if bins:
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        widths = [b["upper"] - b["lower"] for b in bins]
        fractions = [b["fraction_positive"] for b in bins]
        ax.bar(
            centres,
            fractions,
            width=widths,
            alpha=0.6,
            edgecolor="black",
            label="fraction positive",
        )
        confidences = [b["mean_confidence"] for b in bins]
        ax.plot(confidences, fractions, marker="o", color="tab:red", label="observed")
    ax.set(xlabel="Predicted probability", ylabel="Fraction positive", xlim=(0, 1), ylim=(0, 1))
    ece = calibration.get("ece")
    subtitle = f"ECE = {ece:.3f}" if isinstance(ece, float) and math.isfinite(ece) else "ECE n/a"
    ax.set_title(_title(f"Reliability diagram ({subtitle})", synthetic), fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _fairness_bar_metrics(result: Mapping[str, Any]) -> list[str]:
    """The bars of a fairness plot: AUROC, TPR and FPR of a classifier's groups, else the
    Dice figures of a segmentation's."""
    names = list(result.get("largest_gap", {}))
    classification = [m for m in ("mean_auroc", "mean_tpr", "mean_fpr") if m in names]
    return classification or [m for m in names if m == "mean_dice" or m.startswith("dice_")]


def _plot_fairness(path: Path, attribute: str, result: Mapping[str, Any], synthetic: bool) -> None:
    metric_names = _fairness_bar_metrics(result)
    groups = [
        g
        for g, e in result.get("groups", {}).items()
        if any(e.get(m) is not None for m in metric_names)
    ]
    fig = Figure(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(metric_names)) / 2), 4.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(metric_names))
    x = np.arange(len(groups))
    for index, metric in enumerate(metric_names):
        heights = [result["groups"][g].get(metric) for g in groups]
        heights = [np.nan if h is None else float(h) for h in heights]
        ax.bar(x + (index - (len(metric_names) - 1) / 2) * width, heights, width, label=metric)
    labels = [
        f"{g}\nn={result['groups'][g]['n']}"
        + (" (unknown)" if result["groups"][g]["status"] == "unknown" else "")
        for g in groups
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value")
    title = f"Subgroup performance by {attribute}"
    too_small = result.get("too_small") or []
    if too_small:
        title += "\ntoo small: " + ", ".join(f"{t['group']} (n={t['n']})" for t in too_small)
    ax.set_title(_title(title, synthetic), fontsize=9)
    if metric_names:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "attribute"


def write_report(
    out_dir: Path,
    *,
    title: str,
    task: str,
    metrics: dict[str, Any],
    fairness: dict[str, Any] | None,
    curves: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    synthetic: bool,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir`` (created if needed).

    ``report.json`` holds title, task, the synthetic flag, metrics, fairness and calibration,
    strictly JSON (NaN and infinities become null). ``report.md`` has the tables described in
    the module docstring and, when ``synthetic`` is True, the banner
    ``SYNTHETIC_BANNER`` at the top (plots carry it too). Plots: ``roc_curves.png`` when
    ``curves`` is given, ``reliability.png`` when ``calibration`` is, and
    ``fairness_<attribute>.png`` per fairness attribute. Returns ``{"json", "markdown",
    "roc_curves", "reliability", "fairness_<attribute>"}`` → path, for the files written.
    """
    if task not in SERVED_CONTRACTS:
        raise ValueError(f"unknown task {task!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    document = {
        "title": title,
        "task": task,
        "synthetic": synthetic,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
        "fairness": fairness,
        "calibration": calibration,
    }
    paths["json"] = out_dir / "report.json"
    paths["json"].write_text(json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n")

    lines = [f"# {title}", ""]
    if synthetic:
        lines += [
            f"> **⚠️ {SYNTHETIC_BANNER}.**",
            ">",
            "> Figures below come from synthetic data.",
            "",
        ]
    lines += [f"Task: `{task}` · generated {document['generated_at']}", ""]
    known = {"classification", "thresholds", "localization", "segmentation"}
    if metrics.get("classification"):
        lines += _classification_md(metrics["classification"])
    if metrics.get("thresholds"):
        lines += _thresholds_md(metrics["thresholds"])
    if metrics.get("localization"):
        lines += _localization_md(metrics["localization"])
    if metrics.get("segmentation"):
        lines += _segmentation_md(metrics["segmentation"])
    if calibration:
        lines += _calibration_md(calibration)
    lines += _other_scalars_md(metrics, known)
    if fairness:
        lines += _fairness_md(fairness)

    if curves:
        paths["roc_curves"] = out_dir / "roc_curves.png"
        _plot_roc(paths["roc_curves"], curves, metrics, synthetic)
    if calibration:
        paths["reliability"] = out_dir / "reliability.png"
        _plot_reliability(paths["reliability"], calibration, synthetic)
    for attribute, result in (fairness or {}).get("attributes", {}).items():
        key = f"fairness_{_safe_name(str(attribute))}"
        paths[key] = out_dir / f"{key}.png"
        _plot_fairness(paths[key], str(attribute), result, synthetic)

    plots = [p for k, p in paths.items() if k not in ("json", "markdown")]
    if plots:
        lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text("\n".join(lines).rstrip() + "\n")
    return paths
