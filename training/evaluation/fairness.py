"""Subgroup performance (fairness) for the classification and segmentation models.

Each attribute (``"sex"``, ``"age_band"``, ``"race"``, ...) maps to one group value per
sample; None, NaN, ``""`` and ``"unknown"`` all mean unknown and form the group ``"unknown"``,
which is reported (with its size, and its metrics when it is large enough) but never
compared. Groups smaller than ``min_group_size`` are reported with ``status: "too_small"``
and their size, without metrics, and are not compared either. Gaps are computed over the
remaining groups.

Result of both functions::

    {"min_group_size": int, "gap_thresholds": {metric: float},
     "attributes": {attribute: {
         "groups": {group: {"status": "ok" | "too_small" | "unknown", "n": int, ...metrics}},
         "compared_groups": [group, ...],
         "too_small": [{"group": str, "n": int}, ...],
         "unknown_n": int,
         "largest_gap": {metric: {"value": float, "between": [highest, lowest]} | None},
         "flags": [{"metric", "gap", "threshold", "between"}, ...]}}}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medvision_contract.labels import BRATS_REGIONS
from training.evaluation.classification import auroc_with_ci, calibration_error, rates_at_threshold

UNKNOWN_GROUP = "unknown"

# A gap above these flags the metric (AUROC/ECE/Dice as fractions, HD95 in millimetres).
CLASSIFICATION_GAP_THRESHOLDS: dict[str, float] = {
    "mean_auroc": 0.05,
    "mean_tpr": 0.10,
    "mean_fpr": 0.10,
    "ece": 0.05,
}
SEGMENTATION_DICE_GAP = 0.05
SEGMENTATION_HD95_GAP_MM = 5.0


def _group_name(value: object) -> str:
    """The reported group of one sample's attribute value ("unknown" for missing values)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN_GROUP
    text = str(value).strip()
    return UNKNOWN_GROUP if text in ("", UNKNOWN_GROUP) else text


def _partition(values: Sequence[object], n_samples: int, attribute: str) -> dict[str, np.ndarray]:
    """Sample indices of each group, known groups sorted by name and "unknown" last."""
    if len(values) != n_samples:
        raise ValueError(
            f"attribute {attribute!r} has {len(values)} values for {n_samples} samples"
        )
    names = np.array([_group_name(v) for v in values], dtype=object)
    ordered = sorted(set(names) - {UNKNOWN_GROUP})
    if UNKNOWN_GROUP in names:
        ordered.append(UNKNOWN_GROUP)
    return {name: np.flatnonzero(names == name) for name in ordered}


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when missing or not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _gaps(
    groups: Mapping[str, Mapping[str, Any]],
    compared: Sequence[str],
    metrics: Sequence[str],
    thresholds: Mapping[str, float],
) -> tuple[dict[str, dict[str, Any] | None], list[dict[str, Any]]]:
    """Largest gap of each metric across the compared groups, and the flags it raises."""
    largest: dict[str, dict[str, Any] | None] = {}
    flags: list[dict[str, Any]] = []
    for metric in metrics:
        values = {g: v for g in compared if (v := _finite(groups[g].get(metric))) is not None}
        if len(values) < 2:
            largest[metric] = None
            continue
        high = max(values, key=values.__getitem__)
        low = min(values, key=values.__getitem__)
        gap = values[high] - values[low]
        largest[metric] = {"value": gap, "between": [high, low]}
        limit = thresholds.get(metric)
        if limit is not None and gap > limit:
            flags.append({"metric": metric, "gap": gap, "threshold": limit, "between": [high, low]})
    return largest, flags


def _attribute_result(
    partition: Mapping[str, np.ndarray],
    min_group_size: int,
    metrics_of: Any,
    metric_names: Sequence[str],
    thresholds: Mapping[str, float],
) -> dict[str, Any]:
    """Groups, too-small list, largest gaps and flags of one attribute."""
    groups: dict[str, dict[str, Any]] = {}
    too_small: list[dict[str, Any]] = []
    compared: list[str] = []
    for name, indices in partition.items():
        n = int(indices.size)
        if name == UNKNOWN_GROUP:
            metrics = metrics_of(indices) if n >= min_group_size else {}
            groups[name] = {"status": "unknown", "n": n, **metrics}
        elif n < min_group_size:
            groups[name] = {"status": "too_small", "n": n}
            too_small.append({"group": name, "n": n})
        else:
            groups[name] = {"status": "ok", "n": n, **metrics_of(indices)}
            compared.append(name)
    largest, flags = _gaps(groups, compared, metric_names, thresholds)
    unknown = partition.get(UNKNOWN_GROUP)
    return {
        "groups": groups,
        "compared_groups": compared,
        "too_small": too_small,
        "unknown_n": int(unknown.size) if unknown is not None else 0,
        "largest_gap": largest,
        "flags": flags,
    }


def classification_fairness(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None,
    thresholds: np.ndarray | Sequence[float],
    groups: Mapping[str, Sequence[str | None]],
    labels: Sequence[str],
    *,
    min_group_size: int = 30,
    n_boot: int = 200,
    seed: int = 0,
    gap_thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-group AUROC (with CI), TPR/FPR at ``thresholds`` and ECE, with gaps and flags.

    For every attribute in ``groups`` and each group large enough: ``n``, ``mean_auroc`` with
    ``mean_auroc_ci_low`` / ``mean_auroc_ci_high`` (bootstrap over the group's samples),
    ``per_label`` ``{name: {"auroc", "ci_low", "ci_high", "n_pos", "n_neg", "tpr", "fpr"}}``,
    ``mean_tpr`` / ``mean_fpr`` (over labels where defined) and ``ece`` (``y_score`` read as
    probabilities). ``largest_gap`` and ``flags`` cover ``mean_auroc``, ``mean_tpr``,
    ``mean_fpr`` and ``ece``; a flag is raised when a gap exceeds its entry in
    ``gap_thresholds`` (defaults ``CLASSIFICATION_GAP_THRESHOLDS``). See the module docstring
    for the full structure.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    mask_array = None if mask is None else np.asarray(mask)
    limits = {**CLASSIFICATION_GAP_THRESHOLDS, **(gap_thresholds or {})}
    cut = np.asarray(thresholds, dtype=np.float64)

    def metrics_of(indices: np.ndarray) -> dict[str, Any]:
        sub_mask = None if mask_array is None else mask_array[indices]
        sub_true, sub_score = y_true[indices], y_score[indices]
        auroc = auroc_with_ci(sub_true, sub_score, sub_mask, labels, n_boot=n_boot, seed=seed)
        rates = rates_at_threshold(sub_true, sub_score, sub_mask, cut)
        ece, _ = calibration_error(sub_true, sub_score, sub_mask)
        per_label = {
            name: {
                **{k: auroc["per_label"][name][k] for k in ("auroc", "ci_low", "ci_high")},
                "n_pos": auroc["per_label"][name]["n_pos"],
                "n_neg": auroc["per_label"][name]["n_neg"],
                "tpr": _finite(rates["tpr"][i]),
                "fpr": _finite(rates["fpr"][i]),
            }
            for i, name in enumerate(labels)
        }
        return {
            "mean_auroc": auroc["mean_auroc"],
            "mean_auroc_ci_low": auroc["mean_ci_low"],
            "mean_auroc_ci_high": auroc["mean_ci_high"],
            "n_labels_excluded": auroc["n_labels_excluded"],
            "mean_tpr": _nanmean(rates["tpr"]),
            "mean_fpr": _nanmean(rates["fpr"]),
            "ece": ece,
            "per_label": per_label,
        }

    attributes = {
        attribute: _attribute_result(
            _partition(values, y_true.shape[0], attribute),
            min_group_size,
            metrics_of,
            list(CLASSIFICATION_GAP_THRESHOLDS),
            limits,
        )
        for attribute, values in groups.items()
    }
    return {"min_group_size": min_group_size, "gap_thresholds": limits, "attributes": attributes}


def segmentation_fairness(
    per_case_metrics: list[dict[str, Any]],
    groups: Mapping[str, Sequence[str | None]],
    *,
    min_group_size: int = 10,
    region_names: Sequence[str] = BRATS_REGIONS,
    gap_thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per-group Dice and HD95 per region (``dice_hd95`` results per case), with gaps and flags.

    For every attribute and each group large enough: ``n``, ``mean_dice`` (per-case mean over
    regions, averaged over cases), and per region ``dice_<region>`` (mean Dice) and
    ``hd95_<region>`` (mean HD95 in mm over cases where it is defined), also grouped under
    ``per_region``. Gaps and flags cover all of these; default flag thresholds are a Dice gap
    above 0.05 and an HD95 gap above 5 mm. See the module docstring for the full structure.
    """
    limits: dict[str, float] = {"mean_dice": SEGMENTATION_DICE_GAP}
    for region in region_names:
        limits[f"dice_{region}"] = SEGMENTATION_DICE_GAP
        limits[f"hd95_{region}"] = SEGMENTATION_HD95_GAP_MM
    limits.update(gap_thresholds or {})
    metric_names = ["mean_dice"] + [f"{m}_{r}" for r in region_names for m in ("dice", "hd95")]

    def values(indices: np.ndarray, region: str, key: str) -> np.ndarray:
        found = [per_case_metrics[i].get(region, {}).get(key) for i in indices]
        return np.array([np.nan if v is None else float(v) for v in found], dtype=np.float64)

    def metrics_of(indices: np.ndarray) -> dict[str, Any]:
        dice = np.stack([values(indices, r, "dice") for r in region_names], axis=1)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            case_means = np.nanmean(dice, axis=1)
        result: dict[str, Any] = {"mean_dice": _nanmean(case_means), "per_region": {}}
        for column, region in enumerate(region_names):
            hd95 = values(indices, region, "hd95")
            result[f"dice_{region}"] = _nanmean(dice[:, column])
            result[f"hd95_{region}"] = _nanmean(hd95)
            result["per_region"][region] = {
                "dice": result[f"dice_{region}"],
                "hd95": result[f"hd95_{region}"],
                "hd95_n_undefined": int(np.sum(~np.isfinite(hd95))),
            }
        return result

    attributes = {
        attribute: _attribute_result(
            _partition(group_values, len(per_case_metrics), attribute),
            min_group_size,
            metrics_of,
            metric_names,
            limits,
        )
        for attribute, group_values in groups.items()
    }
    return {"min_group_size": min_group_size, "gap_thresholds": limits, "attributes": attributes}
