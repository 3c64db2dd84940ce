"""Brain-tumour segmentation: training task and full-volume evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from medvision_contract.labels import BRATS_REGIONS
from medvision_contract.preprocess import brain_zscore
from medvision_contract.regions import labels_to_regions, region_volumes_ml
from training.data.brats import load_brats, read_brats_case
from training.data.datasets import BratsDataset
from training.data.records import BratsRecord, LoadReport
from training.data.transforms import brats_train_transforms
from training.engine.checkpoint import load_checkpoint
from training.engine.meta import BratsMeta
from training.evaluation.fairness import segmentation_fairness
from training.evaluation.lesionwise import lesion_wise_regions
from training.evaluation.report import write_report
from training.evaluation.segmentation import dice_hd95, sliding_window_predict, summarise_cases
from training.losses import DiceFocalLoss
from training.networks.brats import build_brats_net
from training.tasks.common import demographic_groups, load_trained, skipped_lines

Split = Literal["train", "val", "test", "all"]


@dataclass
class BratsTaskConfig:
    data: Path
    preset: str = "default"
    roi: int = 96
    skip_bad: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    min_group_size: int = 10


def split_of(case_id: str, val_fraction: float = 0.15, test_fraction: float = 0.2) -> str:
    """A case's split, fixed by a hash of its id (stable across runs and machines)."""
    position = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if position < test_fraction:
        return "test"
    if position < test_fraction + val_fraction:
        return "val"
    return "train"


def select(
    records: Sequence[BratsRecord], split: Split, config: BratsTaskConfig
) -> list[BratsRecord]:
    """The records of one split (``all`` keeps every record)."""
    if split == "all":
        return list(records)
    return [
        r
        for r in records
        if split_of(r.case_id, config.val_fraction, config.test_fraction) == split
    ]


class BratsTask:
    """3-D residual U-Net predicting the nested regions ET, TC, WT with Dice + Focal loss."""

    name = "brats"
    monitor = "dice_mean"

    def __init__(self, config: BratsTaskConfig, seed: int = 0) -> None:
        self.config = config
        records, self.load_report = load_brats(config.data, skip_bad=config.skip_bad)
        self.train_records = select(records, "train", config)
        self.val_records = select(records, "val", config)
        self.test_records = select(records, "test", config)
        if not self.train_records or not self.val_records:
            raise ValueError(
                f"{config.data}: too few cases for train/val/test splits ({len(records)} cases)"
            )
        self.loss = DiceFocalLoss()
        self.synthetic = any(r.synthetic for r in records)

    def params(self) -> dict[str, Any]:
        return {
            "task": "brats",
            "preset": self.config.preset,
            "roi": self.config.roi,
            "train_cases": len(self.train_records),
            "val_cases": len(self.val_records),
            "test_cases": len(self.test_records),
            "skipped": self.load_report.count,
            "synthetic_data": self.synthetic,
        }

    def build_model(self) -> nn.Module:
        return build_brats_net(preset=self.config.preset)

    def train_dataset(self) -> BratsDataset:
        roi = (self.config.roi,) * 3
        return BratsDataset(self.train_records, brats_train_transforms(roi), cache=True)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss: torch.Tensor = self.loss(model(batch["image"]).float(), batch["label"])
        return loss

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        per_case = [case_metrics(model, r, self.config.roi, hd95=False) for r in self.val_records]
        dice = {name: float(np.mean([c[name]["dice"] for c in per_case])) for name in BRATS_REGIONS}
        return {
            **{f"dice_{k}": v for k, v in dice.items()},
            "dice_mean": float(np.mean(list(dice.values()))),
        }

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "task": "brats",
            "regions": list(BRATS_REGIONS),
            "preset": self.config.preset,
            "roi": self.config.roi,
            "threshold": 0.5,
            "normalisation": "per-channel z-score over brain (non-zero) voxels",
            "synthetic_data": self.synthetic,
        }

    def finalize(
        self, model: nn.Module, best_path: Path, out_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Path]]:
        """Full-volume evaluation of the best model on the test split."""
        meta = load_checkpoint(best_path)["meta"]
        records = self.test_records or self.val_records
        return evaluate(model, meta, records, out_dir, self.config, [self.load_report])


@torch.no_grad()
def case_metrics(
    model: nn.Module, record: BratsRecord, roi: int, *, hd95: bool = True
) -> dict[str, Any]:
    """Dice (and HD95) per region for one case, predicted on the full volume."""
    volume, seg, spacing = read_brats_case(record)
    if seg is None:
        raise ValueError(f"{record.case_id}: no segmentation to evaluate against")
    roi_size = tuple(min(roi, s) for s in volume.shape[1:])
    probs = sliding_window_predict(model, brain_zscore(volume), roi=roi_size, overlap=0.5)
    predicted = probs > 0.5
    truth = labels_to_regions(seg).astype(bool)
    metrics = dice_hd95(predicted, truth, spacing) if hd95 else _dice_only(predicted, truth)
    if hd95:
        metrics["lesion_wise"] = lesion_wise_regions(predicted, truth, spacing)
    metrics["case_id"] = record.case_id
    metrics["true_volume_ml"] = region_volumes_ml(seg, spacing)
    return metrics


def _dice_only(predicted: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for index, name in enumerate(BRATS_REGIONS):
        p, t = predicted[index], truth[index]
        total = p.sum() + t.sum()
        result[name] = {"dice": 1.0 if total == 0 else float(2 * (p & t).sum() / total)}
    return result


def evaluate(
    model: nn.Module,
    meta: dict[str, Any],
    records: Sequence[BratsRecord],
    out_dir: Path,
    config: BratsTaskConfig,
    skipped: Sequence[LoadReport] = (),
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Dice and HD95 per region on full volumes, fairness by sex, age band and race."""
    model.eval()
    per_case = [case_metrics(model, r, int(meta["roi"])) for r in records]
    fairness = segmentation_fairness(
        per_case, demographic_groups(records), min_group_size=config.min_group_size
    )
    summary_stats = summarise_cases(per_case)
    metrics = {
        "segmentation": summary_stats,
        "per_case": per_case,
        "n_cases": len(records),
        "skipped": skipped_lines(skipped),
        "model": {k: meta.get(k) for k in ("preset", "roi", "threshold")},
    }
    paths = write_report(
        out_dir, title="Brain tumour segmentation evaluation", task="brats", metrics=metrics,
        fairness=fairness, synthetic=bool(meta.get("synthetic_data")),
    )  # fmt: skip
    summary: dict[str, Any] = {}
    for name in BRATS_REGIONS:
        dices = [c[name]["dice"] for c in per_case]
        summary[f"dice_{name}"] = float(np.mean(dices))
        hds = [c[name].get("hd95") for c in per_case if c[name].get("hd95") is not None]
        summary[f"hd95_{name}"] = float(np.mean(hds)) if hds else None
        lesion_wise = summary_stats[name].get("lesion_wise")
        if lesion_wise:
            summary[f"lesion_wise_dice_{name}"] = lesion_wise["dice"]["mean"]
            summary[f"lesion_wise_hd95_{name}"] = lesion_wise["hd95"]["mean"]
    return summary, paths


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained network (eval mode) and its checkpoint metadata, validated
    (``BratsMeta``; ``ValueError`` names a missing or mistyped field)."""
    model, meta = load_trained(
        checkpoint, BratsMeta.from_dict, lambda meta: build_brats_net(preset=meta.preset), device
    )
    return model, meta.to_dict()


def evaluate_checkpoint(
    checkpoint: Path, data: Path, split: str, out: Path, min_group_size: int, skip_bad: bool
) -> dict[str, Path]:
    """``medvision evaluate brats``: evaluate a checkpoint on a split, report also to MLflow."""
    from training import tracking

    model, meta = load_model(checkpoint)
    config = BratsTaskConfig(data=data, preset=meta["preset"], min_group_size=min_group_size)
    records, report = load_brats(data, skip_bad=skip_bad)
    chosen = select(records, split, config)  # type: ignore[arg-type]
    summary, paths = evaluate(model, meta, chosen, out, config, [report])
    tracking.log_evaluation("brats", split, checkpoint, summary, paths)
    return paths
