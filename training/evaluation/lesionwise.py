"""BraTS 2023 challenge metrics: lesion-wise Dice and HD95 (the challenge's ranking metrics).

The challenge (Saluja et al., the BraTS-2023-Metrics evaluation used by the Synapse
leaderboards) scores each ground-truth lesion on its own, so that a model is not rewarded for
segmenting one large tumour and missing small ones. For each region (ET, TC, WT), with the
parameters of the adult glioma task (BraTS-GLI):

1. Ground-truth lesions are the 26-connected components of the region, after merging the
   components whose dilations (``DILATION_ITERATIONS`` passes of the 18-neighbourhood
   structure) touch: nearby fragments of one tumour count as one lesion. The ground truth
   itself is not dilated.
2. A prediction component belongs to a ground-truth lesion when it overlaps that lesion's
   dilation; the lesion's Dice and HD95 are computed against the union of its prediction
   components. A lesion without any is missed: Dice 0, HD95 ``HD95_PENALTY_MM``.
3. Lesions of ``MIN_LESION_VOLUME_MM3`` or less (in mm³ from the voxel spacing) are left
   out of the scores (their matched predictions are not false positives either).
4. Prediction components that belong to no lesion are false positives, each counted as a
   lesion with Dice 0 and HD95 ``HD95_PENALTY_MM``.
5. Lesion-wise Dice = sum of lesion Dice / (lesions + false positives); lesion-wise HD95 =
   (sum of lesion HD95 + 374 × false positives) / (lesions + false positives). With no
   lesion and no false positive (both empty): Dice 1, HD95 0. Ground truth empty and a
   prediction: Dice 0, HD95 374.

The challenge's whole-image ("legacy") HD95 also gives 374 mm when exactly one of the two
masks is empty; :func:`challenge_hd95` applies that convention to a per-case HD95.

HD95 here is MONAI's (the 95th percentile of surface-voxel distances, symmetric), where
the challenge uses DeepMind's ``surface_distance`` package, which weights surface elements
by their area: on the same masks the two agree to within about a voxel, not bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from medvision_contract.labels import BRATS_REGIONS

#: HD95 (mm) of a missed lesion, a false positive and a one-sided empty case: the diagonal of
#: the BraTS 240 × 240 × 155 mm field of view, rounded up, as the challenge uses.
HD95_PENALTY_MM = 374.0
#: Dilation passes used to merge and match lesions (BraTS-GLI: 3).
DILATION_ITERATIONS = 3
#: Lesions at or below this volume are not scored (BraTS-GLI: 50 mm³).
MIN_LESION_VOLUME_MM3 = 50.0

_CONNECTIVITY_26 = ndimage.generate_binary_structure(3, 3)
_DILATION_18 = ndimage.generate_binary_structure(3, 2)


@dataclass(frozen=True)
class LesionWiseScore:
    """One region of one case, scored as the challenge does."""

    dice: float
    hd95: float
    #: Scored ground-truth lesions with at least one matching prediction component.
    true_positives: int
    #: Scored ground-truth lesions without one.
    false_negatives: int
    #: Prediction components matching no ground-truth lesion.
    false_positives: int


def _dice(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total if total else 1.0


def hd95_mm(
    pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], spacing: Sequence[float]
) -> float:
    """MONAI's symmetric 95th-percentile Hausdorff distance in mm of two non-empty masks."""
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument to get_mask_edges internally.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None].float(),
            torch.from_numpy(truth)[None, None].float(),
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        ).item()
    return float(value)


def _lesion_hd95(
    pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], spacing: Sequence[float]
) -> float:
    if not pred.any() or not truth.any():
        return HD95_PENALTY_MM
    value = hd95_mm(pred, truth, spacing)
    return value if np.isfinite(value) else HD95_PENALTY_MM


def _dilate(mask: npt.NDArray[np.bool_], iterations: int) -> npt.NDArray[np.bool_]:
    if iterations <= 0:
        return mask
    dilated: npt.NDArray[np.bool_] = ndimage.binary_dilation(
        mask, structure=_DILATION_18, iterations=iterations
    )
    return dilated


def lesion_wise_score(
    pred: npt.NDArray[Any],
    truth: npt.NDArray[Any],
    spacing_mm: Sequence[float],
    *,
    dilation_iterations: int = DILATION_ITERATIONS,
    min_lesion_volume_mm3: float = MIN_LESION_VOLUME_MM3,
) -> LesionWiseScore:
    """Lesion-wise Dice and HD95 of one binary 3-D region (see the module docstring)."""
    pred_mask, true_mask = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred_mask.shape != true_mask.shape or pred_mask.ndim != 3:
        raise ValueError(
            f"prediction {pred_mask.shape} and ground truth {true_mask.shape} must be one 3-D shape"
        )
    spacing = [float(s) for s in spacing_mm]
    voxel_mm3 = float(np.prod(spacing))
    pred_components, _ = ndimage.label(pred_mask, structure=_CONNECTIVITY_26)
    dilated_components, n_lesions = ndimage.label(
        _dilate(true_mask, dilation_iterations), structure=_CONNECTIVITY_26
    )
    # Ground-truth voxels take the label of the dilated component they lie in: fragments
    # whose dilations touch become one lesion.
    lesions = np.where(true_mask, dilated_components, 0)

    matched: set[int] = set()
    dice_sum, hd95_sum = 0.0, 0.0
    scored, hits = 0, 0
    for lesion in range(1, n_lesions + 1):
        lesion_mask = lesions == lesion
        reach = _dilate(lesion_mask, dilation_iterations)
        overlapping = np.unique(pred_components[reach])
        overlapping = overlapping[overlapping != 0]
        matched.update(int(label) for label in overlapping)
        if lesion_mask.sum() * voxel_mm3 <= min_lesion_volume_mm3:
            continue
        scored += 1
        lesion_pred = np.isin(pred_components, overlapping)
        if overlapping.size:
            hits += 1
            dice_sum += _dice(lesion_pred, lesion_mask)
            hd95_sum += _lesion_hd95(lesion_pred, lesion_mask, spacing)
        else:
            hd95_sum += HD95_PENALTY_MM
    false_positives = len(set(np.unique(pred_components).tolist()) - matched - {0})
    counted = scored + false_positives
    if counted == 0:
        return LesionWiseScore(1.0, 0.0, 0, 0, 0)
    return LesionWiseScore(
        dice=dice_sum / counted,
        hd95=(hd95_sum + HD95_PENALTY_MM * false_positives) / counted,
        true_positives=hits,
        false_negatives=scored - hits,
        false_positives=false_positives,
    )


def lesion_wise_regions(
    pred_regions: npt.NDArray[Any],
    true_regions: npt.NDArray[Any],
    spacing_mm: Sequence[float],
    *,
    region_names: Sequence[str] = BRATS_REGIONS,
) -> dict[str, dict[str, float | int]]:
    """:func:`lesion_wise_score` of each region channel ``[R, X, Y, Z]``, as plain dicts."""
    if len(pred_regions) != len(region_names) or len(true_regions) != len(region_names):
        raise ValueError(f"expected {len(region_names)} region channels")
    return {
        name: asdict(lesion_wise_score(pred_regions[index], true_regions[index], spacing_mm))
        for index, name in enumerate(region_names)
    }


def challenge_hd95(hd95: float | None) -> float:
    """A per-case HD95 under the challenge's convention: undefined (one mask empty) is 374."""
    return HD95_PENALTY_MM if hd95 is None else float(hd95)
