"""BraTS segmentation evaluation: sliding-window inference, per-region Dice and HD95, and
their summaries (with the challenge's lesion-wise figures when the cases carry them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice

from medvision_contract.labels import BRATS_REGIONS
from training.evaluation.lesionwise import challenge_hd95, hd95_mm


def sliding_window_predict(
    model: torch.nn.Module,
    volume: torch.Tensor | np.ndarray,
    *,
    roi: Sequence[int] = (96, 96, 96),
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    mode: str = "gaussian",
) -> np.ndarray:
    """Region probabilities ``[C, X, Y, Z]`` (sigmoid of the logits) of one ``[4, X, Y, Z]`` volume.

    Runs ``monai.inferers.sliding_window_inference`` with the model in eval mode and no
    gradients, on the device of the model's parameters; the model's train/eval mode is restored
    afterwards. Volumes smaller than ``roi`` are padded by MONAI and cropped back.
    """
    inputs = torch.as_tensor(np.asarray(volume) if not torch.is_tensor(volume) else volume)
    if inputs.ndim != 4:
        raise ValueError(f"volume must be [channels, X, Y, Z]; got shape {tuple(inputs.shape)}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = sliding_window_inference(
                inputs.float().unsqueeze(0).to(device),
                roi_size=tuple(roi),
                sw_batch_size=sw_batch_size,
                predictor=model,
                overlap=overlap,
                mode=mode,
            )
            if not isinstance(logits, torch.Tensor):
                raise TypeError("the model must return a single tensor of region logits")
            probabilities = torch.sigmoid(logits)[0]
    finally:
        model.train(was_training)
    return probabilities.cpu().numpy()


def dice_hd95(
    pred_regions: np.ndarray,
    true_regions: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    region_names: Sequence[str] = BRATS_REGIONS,
) -> dict[str, dict[str, Any]]:
    """Dice and 95th-percentile Hausdorff distance (mm) per region of one case.

    ``pred_regions`` / ``true_regions`` are boolean ``[R, X, Y, Z]`` masks, one channel per name
    in ``region_names``; distances use ``spacing_mm`` per axis (MONAI's surface-based HD95).
    Conventions: both masks empty -> dice 1.0, hd95 0.0; exactly one empty -> dice 0.0, hd95
    None with a ``reason``. Returns ``{name: {"dice", "hd95"[, "reason"]}}``.
    """
    pred = np.asarray(pred_regions).astype(bool)
    true = np.asarray(true_regions).astype(bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ in shape")
    if pred.shape[0] != len(region_names):
        raise ValueError(f"{pred.shape[0]} region channels for {len(region_names)} region names")
    spacing = [float(s) for s in spacing_mm]
    if len(spacing) != pred.ndim - 1:
        raise ValueError(f"spacing_mm needs {pred.ndim - 1} values; got {len(spacing)}")

    results: dict[str, dict[str, Any]] = {}
    for channel, name in enumerate(region_names):
        p, t = pred[channel], true[channel]
        p_empty, t_empty = not p.any(), not t.any()
        if p_empty and t_empty:
            results[name] = {"dice": 1.0, "hd95": 0.0}
            continue
        if p_empty or t_empty:
            which = "prediction" if p_empty else "ground truth"
            results[name] = {"dice": 0.0, "hd95": None, "reason": f"{which} empty"}
            continue
        p_tensor = torch.from_numpy(p)[None, None].float()
        t_tensor = torch.from_numpy(t)[None, None].float()
        dice = compute_dice(p_tensor, t_tensor, include_background=True)
        results[name] = {"dice": float(dice.item()), "hd95": hd95_mm(p, t, spacing)}
    return results


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "median": None, "std": None, "n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "std": float(array.std()),
        "n": int(array.size),
    }


def summarise_cases(
    per_case: list[dict[str, Any]], *, region_names: Sequence[str] = BRATS_REGIONS
) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean, median, (population) std and count of Dice and HD95 per region across cases.

    ``per_case`` holds ``dice_hd95`` results (other keys, such as a case id, are ignored).
    Undefined HD95 values (None) are left out of ``hd95`` and counted in ``n_undefined``;
    ``hd95_challenge`` counts them as 374 mm, as the BraTS challenge does. When cases carry
    ``lesion_wise`` scores (:mod:`training.evaluation.lesionwise`), ``lesion_wise`` holds
    their Dice/HD95 statistics and the summed lesion counts. Returns ``{region: {"dice",
    "hd95"[, "hd95_challenge", "lesion_wise"]}}``.
    """
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name in region_names:
        entries = [case[name] for case in per_case if isinstance(case.get(name), dict)]
        dice = [float(e["dice"]) for e in entries if e.get("dice") is not None]
        hd95 = [float(e["hd95"]) for e in entries if e.get("hd95") is not None]
        summary[name] = {
            "dice": _stats(dice),
            "hd95": {**_stats(hd95), "n_undefined": len(entries) - len(hd95)},
        }
        # The challenge's convention: a one-sided empty case counts 374 mm, not left out.
        with_hd95 = [e for e in entries if "hd95" in e]
        if with_hd95:
            summary[name]["hd95_challenge"] = _stats([challenge_hd95(e["hd95"]) for e in with_hd95])
        lesion_wise = [
            case["lesion_wise"][name]
            for case in per_case
            if isinstance(case.get("lesion_wise"), dict) and name in case["lesion_wise"]
        ]
        if lesion_wise:
            summary[name]["lesion_wise"] = {
                "dice": _stats([float(e["dice"]) for e in lesion_wise]),
                "hd95": _stats([float(e["hd95"]) for e in lesion_wise]),
                **{
                    key: int(sum(int(e[key]) for e in lesion_wise))
                    for key in ("true_positives", "false_negatives", "false_positives")
                },
            }
    return summary
