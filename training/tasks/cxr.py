"""Chest X-ray classification: training task, thresholds and the full evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

from medvision_contract.labels import CXR_LABELS
from training.data.datasets import CxrDataset
from training.data.nih import load_nih
from training.data.records import Box, CxrRecord, LoadReport
from training.data.transforms import (
    cxr_eval_transforms,
    cxr_train_transforms,
    dataset_intensity_stats,
)
from training.engine.checkpoint import load_checkpoint, save_checkpoint
from training.engine.meta import CxrMeta
from training.evaluation.classification import choose_thresholds
from training.evaluation.localization import cam_box_iou, pointing_game
from training.evaluation.report import write_report
from training.losses import MaskedWeightedBCE, positive_class_weights
from training.networks.cxr import build_cxr_net
from training.tasks import common


@dataclass
class CxrTaskConfig:
    data: Path
    preset: str = "densenet121"
    size: int = 224
    hflip: bool = True
    skip_bad: bool = False
    val_fraction: float = 0.1
    threshold_method: str = "youden"
    target_sensitivity: float = 0.9
    min_group_size: int = 30


@dataclass
class Predictions:
    """Per-image probabilities (and CAMs upsampled to the model input) in label order."""

    probs: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    cams: np.ndarray | None = None


class CxrTask:
    """ChestX-ray14-style multi-label classification with masked, weighted BCE."""

    name = "cxr"
    monitor = "mean_auroc"

    def __init__(self, config: CxrTaskConfig, seed: int = 0) -> None:
        self.config = config
        splits = {
            split: load_nih(
                config.data, split, val_fraction=config.val_fraction, seed=seed,
                skip_bad=config.skip_bad,
            )
            for split in ("train", "val")
        }  # fmt: skip
        self.train_records, train_report = splits["train"]
        self.val_records, val_report = splits["val"]
        self.load_reports = [train_report, val_report]
        self.mean, self.std = dataset_intensity_stats(self.train_records)
        labels = np.stack([r.labels for r in self.train_records])
        mask = np.stack([r.mask for r in self.train_records])
        self.loss = MaskedWeightedBCE(
            positive_class_weights(torch.tensor(labels), torch.tensor(mask))
        )
        self.synthetic = any(r.synthetic for r in self.train_records)
        self.model_kwargs: dict[str, Any] = {"preset": config.preset}

    def params(self) -> dict[str, Any]:
        return {
            "task": "cxr",
            "preset": self.config.preset,
            "input_size": self.config.size,
            "hflip": self.config.hflip,
            "train_images": len(self.train_records),
            "val_images": len(self.val_records),
            "skipped_rows": sum(r.count for r in self.load_reports),
            "synthetic_data": self.synthetic,
            "normalisation_mean": self.mean,
            "normalisation_std": self.std,
        }

    def build_model(self) -> nn.Module:
        return build_cxr_net(self.config.preset)

    def train_dataset(self) -> CxrDataset:
        transforms = cxr_train_transforms(
            self.config.size, self.mean, self.std, hflip=self.config.hflip
        )
        return CxrDataset(self.train_records, transforms)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return common.masked_bce(self.loss, model, batch)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        predictions = predict(model, self.val_records, self.eval_transforms(), device)
        return {"mean_auroc": _fast_mean_auroc(predictions)}

    def eval_transforms(self) -> Any:
        return cxr_eval_transforms(self.config.size, self.mean, self.std)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "task": "cxr",
            "labels": list(CXR_LABELS),
            "preset": self.config.preset,
            "input_size": self.config.size,
            "mean": float(self.mean),
            "std": float(self.std),
            "synthetic_data": self.synthetic,
        }

    def finalize(
        self, model: nn.Module, best_path: Path, out_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Path]]:
        """Thresholds from validation (saved into the checkpoint), then the test report."""
        device = next(model.parameters()).device
        val = predict(model, self.val_records, self.eval_transforms(), device)
        thresholds = choose_thresholds(
            val.labels, val.probs, val.mask, method=self.config.threshold_method,  # type: ignore[arg-type]
            target_sensitivity=self.config.target_sensitivity,
        )  # fmt: skip
        state = load_checkpoint(best_path)
        state["meta"]["thresholds"] = [float(t) for t in thresholds]
        state["meta"]["threshold_method"] = self.config.threshold_method
        save_checkpoint(best_path, state)
        test_records, report = load_nih(self.config.data, "test", skip_bad=self.config.skip_bad)
        return evaluate(
            model, state["meta"], test_records, out_dir,
            min_group_size=self.config.min_group_size, skipped=[*self.load_reports, report],
        )  # fmt: skip


def _fast_mean_auroc(predictions: Predictions) -> float:
    scores = []
    for k in range(predictions.labels.shape[1]):
        known = predictions.mask[:, k] > 0
        y = predictions.labels[known, k]
        if 0 < y.sum() < len(y):
            scores.append(roc_auc_score(y, predictions.probs[known, k]))
    return float(np.mean(scores)) if scores else 0.0


@torch.no_grad()
def predict(
    model: nn.Module,
    records: Sequence[CxrRecord],
    transforms: Any,
    device: torch.device,
    *,
    with_cams: bool = False,
    batch_size: int = 32,
) -> Predictions:
    """Probabilities (and CAMs at model-input resolution) for ``records``."""
    loader = DataLoader(CxrDataset(list(records), transforms), batch_size=batch_size)
    probs, labels, masks, cams = [], [], [], []
    with common.evaluating(model):
        for batch in loader:
            prob, cam = common.probabilities(model, batch["image"].to(device), with_cams=with_cams)
            probs.append(prob)
            cams.append(cam)
            labels.append(batch["labels"].numpy())
            masks.append(batch["mask"].numpy())
    return Predictions(
        probs=np.concatenate(probs),
        labels=np.concatenate(labels),
        mask=np.concatenate(masks),
        cams=np.concatenate(cams) if with_cams else None,
    )


def _boxes_in_input_space(record: CxrRecord, size: int) -> list[Box]:
    """Ground-truth boxes mapped into the padded, resized model input."""
    with Image.open(record.image_path) as image:
        width, height = image.size
    return common.boxes_in_input_space(record.boxes, (height, width), size)


def evaluate(
    model: nn.Module,
    meta: dict[str, Any],
    records: Sequence[CxrRecord],
    out_dir: Path,
    *,
    min_group_size: int = 30,
    skipped: Sequence[LoadReport] = (),
    n_boot: int = 1000,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The full test evaluation: AUROC with CIs, thresholds' TPR/FPR, calibration, CAM
    localisation, fairness by sex, age band and race/ethnicity; writes the report."""
    device = next(model.parameters()).device
    size = int(meta["input_size"])
    transforms = cxr_eval_transforms(size, meta["mean"], meta["std"])
    result = predict(model, records, transforms, device, with_cams=True)
    thresholds = np.asarray(meta.get("thresholds") or [0.5] * len(CXR_LABELS))
    figures = common.label_figures(
        result.labels, result.probs, result.mask, thresholds, CXR_LABELS,
        common.demographic_groups(records), n_boot=n_boot, min_group_size=min_group_size,
    )  # fmt: skip
    present = result.labels > 0.5
    boxes = [_boxes_in_input_space(r, size) for r in records]
    assert result.cams is not None
    pointing = pointing_game(result.cams, boxes, (size, size), labels_present=present)
    iou = cam_box_iou(result.cams, boxes, (size, size))
    metrics = {
        "classification": figures.auroc,
        "thresholds": figures.thresholds,
        "localization": {"pointing_game": pointing, "cam_iou": iou},
        "n_images": len(records),
        "skipped": common.skipped_lines(skipped),
        "model": {k: meta.get(k) for k in ("preset", "input_size", "mean", "std")},
    }
    paths = write_report(
        out_dir, title="Chest X-ray classifier evaluation", task="cxr", metrics=metrics,
        fairness=figures.fairness, curves=figures.curves, calibration=figures.calibration,
        synthetic=bool(meta.get("synthetic_data")),
    )  # fmt: skip
    summary = {
        "mean_auroc": figures.auroc["mean_auroc"],
        "mean_auroc_ci_low": figures.auroc["mean_ci_low"],
        "mean_auroc_ci_high": figures.auroc["mean_ci_high"],
        "pointing_game": pointing["accuracy"],
        "cam_box_iou": iou["mean_iou"],
        "ece": figures.calibration["ece"],
        "skipped": len(metrics["skipped"]),  # type: ignore[arg-type]
    }
    return summary, paths


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained network (eval mode) and its checkpoint metadata, validated
    (``CxrMeta``; ``ValueError`` names a missing or mistyped field)."""
    model, meta = common.load_trained(
        checkpoint, CxrMeta.from_dict, lambda meta: build_cxr_net(meta.preset), device
    )
    return model, meta.to_dict()


def evaluate_checkpoint(
    checkpoint: Path, data: Path, split: str, out: Path, min_group_size: int, skip_bad: bool
) -> dict[str, Path]:
    """``medvision evaluate cxr``: evaluate a checkpoint on a split, report also to MLflow."""
    from training import tracking

    model, meta = load_model(checkpoint)
    records, report = load_nih(data, split, skip_bad=skip_bad)  # type: ignore[arg-type]
    summary, paths = evaluate(
        model, meta, records, out, min_group_size=min_group_size, skipped=[report]
    )
    tracking.log_evaluation("cxr", split, checkpoint, summary, paths)
    return paths
