"""Chest X-ray classification: training task, thresholds and the full evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

from medvision_contract.labels import CXR_LABELS, age_band
from medvision_contract.preprocess import padding_geometry
from training.data.datasets import CxrDataset
from training.data.nih import load_nih
from training.data.records import CxrRecord, LoadReport
from training.data.transforms import (
    cxr_eval_transforms,
    cxr_train_transforms,
    dataset_intensity_stats,
)
from training.engine.checkpoint import load_checkpoint, save_checkpoint
from training.engine.meta import CxrMeta
from training.evaluation.classification import (
    auroc_with_ci,
    calibration_error,
    choose_thresholds,
    rates_at_threshold,
    roc_curves,
)
from training.evaluation.fairness import classification_fairness
from training.evaluation.localization import cam_box_iou, pointing_game
from training.evaluation.report import write_report
from training.losses import MaskedWeightedBCE, positive_class_weights
from training.networks.cxr import CxrNet, build_cxr_net


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
        self.train_records, train_report = load_nih(
            config.data,
            "train",
            val_fraction=config.val_fraction,
            seed=seed,
            skip_bad=config.skip_bad,
        )
        self.val_records, val_report = load_nih(
            config.data,
            "val",
            val_fraction=config.val_fraction,
            seed=seed,
            skip_bad=config.skip_bad,
        )
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
        logits = model(batch["image"])
        loss: torch.Tensor = self.loss.to(logits.device)(
            logits.float(), batch["labels"], batch["mask"]
        )
        return loss

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
    was_training = model.training
    model.eval()
    loader = DataLoader(CxrDataset(list(records), transforms), batch_size=batch_size)
    probs, labels, masks, cams = [], [], [], []
    for batch in loader:
        images = batch["image"].to(device)
        if with_cams:
            assert isinstance(model, CxrNet)
            logits, cam = model.forward_with_cam(images)
            cams.append(F.interpolate(cam, size=images.shape[-2:], mode="bicubic").cpu().numpy())
        else:
            logits = model(images)
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
        labels.append(batch["labels"].numpy())
        masks.append(batch["mask"].numpy())
    model.train(was_training)
    return Predictions(
        probs=np.concatenate(probs),
        labels=np.concatenate(labels),
        mask=np.concatenate(masks),
        cams=np.concatenate(cams) if with_cams else None,
    )


def _boxes_in_input_space(record: CxrRecord, size: int) -> list[Any]:
    """Ground-truth boxes mapped into the padded, resized model input."""
    with Image.open(record.image_path) as image:
        width, height = image.size
    scale, (pad_y, pad_x) = padding_geometry((height, width), size)
    return [
        type(box)(
            box.label, box.x * scale + pad_x, box.y * scale + pad_y, box.w * scale, box.h * scale
        )
        for box in record.boxes
    ]


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
    auroc = auroc_with_ci(result.labels, result.probs, result.mask, CXR_LABELS, n_boot=n_boot)
    rates = rates_at_threshold(result.labels, result.probs, result.mask, thresholds)
    ece, bins = calibration_error(result.labels, result.probs, result.mask)
    present = result.labels > 0.5
    boxes = [_boxes_in_input_space(r, size) for r in records]
    assert result.cams is not None
    pointing = pointing_game(result.cams, boxes, (size, size), labels_present=present)
    iou = cam_box_iou(result.cams, boxes, (size, size))
    groups = {
        "sex": [r.sex for r in records],
        "age_band": [age_band(r.age) for r in records],
        "race": [r.race for r in records],
    }
    fairness = classification_fairness(
        result.labels, result.probs, result.mask, thresholds, groups, CXR_LABELS,
        min_group_size=min_group_size,
    )  # fmt: skip
    metrics = {
        "classification": auroc,
        "thresholds": {
            label: {
                "threshold": float(thresholds[k]),
                "tpr": float(rates["tpr"][k]),
                "fpr": float(rates["fpr"][k]),
                "ppv": float(rates["ppv"][k]),
            }
            for k, label in enumerate(CXR_LABELS)
        },
        "localization": {"pointing_game": pointing, "cam_iou": iou},
        "n_images": len(records),
        "skipped": [line for report in skipped for line in report.skipped],
        "model": {k: meta.get(k) for k in ("preset", "input_size", "mean", "std")},
    }
    paths = write_report(
        out_dir, title="Chest X-ray classifier evaluation", task="cxr", metrics=metrics,
        fairness=fairness,
        curves=roc_curves(result.labels, result.probs, result.mask, labels=CXR_LABELS),
        calibration={"ece": ece, "bins": bins}, synthetic=bool(meta.get("synthetic_data")),
    )  # fmt: skip
    summary = {
        "mean_auroc": auroc["mean_auroc"],
        "mean_auroc_ci_low": auroc["mean_ci_low"],
        "mean_auroc_ci_high": auroc["mean_ci_high"],
        "pointing_game": pointing["accuracy"],
        "cam_box_iou": iou["mean_iou"],
        "ece": ece,
        "skipped": len(metrics["skipped"]),  # type: ignore[arg-type]
    }
    return summary, paths


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[CxrNet, dict[str, Any]]:
    """The trained network (eval mode) and its checkpoint metadata, validated
    (``CxrMeta``; ``ValueError`` names a missing or mistyped field)."""
    state = load_checkpoint(checkpoint, map_location=device)
    meta = CxrMeta.from_dict(state["meta"]).to_dict()
    model = build_cxr_net(meta["preset"])
    model.load_state_dict(state["model"])
    return model.eval(), meta


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
