"""Head CT haemorrhage detection: training task, thresholds and the full evaluation.

Training is per slice (RSNA labels are per slice) with weighted BCE: positives weighted by
the negative/positive ratio of each label and ``any`` counted twice, as in the RSNA
challenge's metric. Study-level scores are the maximum over the series' slices
(``training.networks.ct_head``), which is also what ``ct_head_postprocess`` serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from torch import nn
from torch.utils.data import DataLoader

from medvision_contract.labels import CT_HEAD_LABELS, CT_HEAD_LOSS_WEIGHTS
from training.data.datasets import CtSliceDataset
from training.data.records import LoadReport
from training.data.rsna_ich import CtSeriesRecord, load_rsna_ich
from training.engine.checkpoint import load_checkpoint, save_checkpoint
from training.engine.meta import CtHeadMeta
from training.evaluation.classification import auroc_with_ci, choose_thresholds
from training.evaluation.localization import pointing_game
from training.evaluation.report import write_report
from training.losses import MaskedWeightedBCE, positive_class_weights
from training.networks.ct_head import build_ct_head_net
from training.tasks import common


@dataclass
class CtHeadTaskConfig:
    """What ``medvision train ct_head`` trains on and how."""

    data: Path
    preset: str = "densenet121"
    size: int = 256
    context: int = 1
    hflip: bool = True
    skip_bad: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    threshold_method: str = "youden"
    min_group_size: int = 10


@dataclass
class CtPredictions:
    """Slice and study probabilities in ``CT_HEAD_LABELS`` order, with their labels.

    ``slice_study[i]`` is the study (index into the records) of slice row ``i``; ``cams`` are
    the slices' class activation maps upsampled to the network input, [N, 6, S, S].
    """

    slice_probs: np.ndarray
    slice_labels: np.ndarray
    slice_study: np.ndarray
    study_probs: np.ndarray
    study_labels: np.ndarray
    cams: np.ndarray | None = None


def _split(
    config: CtHeadTaskConfig, split: str, seed: int
) -> tuple[list[CtSeriesRecord], LoadReport]:
    return load_rsna_ich(
        config.data, split, val_fraction=config.val_fraction,  # type: ignore[arg-type]
        test_fraction=config.test_fraction, seed=seed, skip_bad=config.skip_bad,
    )  # fmt: skip


class CtHeadTask:
    """RSNA-style intracranial haemorrhage classification per slice and per study."""

    name = "ct_head"
    monitor = "study_mean_auroc"

    def __init__(self, config: CtHeadTaskConfig, seed: int = 0) -> None:
        self.config, self.seed = config, seed
        self.train_records, train_report = _split(config, "train", seed)
        self.val_records, val_report = _split(config, "val", seed)
        if not self.train_records or not self.val_records:
            raise ValueError(f"{config.data}: the train and val splits need at least one series")
        self.load_reports = [train_report, val_report]
        labels = torch.from_numpy(np.concatenate([r.slice_labels for r in self.train_records]))
        self.loss = MaskedWeightedBCE(
            positive_class_weights(labels, torch.ones_like(labels)),
            torch.tensor(CT_HEAD_LOSS_WEIGHTS),
        )
        self.synthetic = any(r.synthetic for r in self.train_records)

    def params(self) -> dict[str, Any]:
        """What MLflow records about the data and the input."""
        return {
            "task": "ct_head",
            "preset": self.config.preset,
            "input_size": self.config.size,
            "context_slices": self.config.context,
            "hflip": self.config.hflip,
            "train_series": len(self.train_records),
            "val_series": len(self.val_records),
            "train_slices": sum(len(r.slices) for r in self.train_records),
            "skipped": sum(r.count for r in self.load_reports),
            "synthetic_data": self.synthetic,
        }

    def meta(self) -> CtHeadMeta:
        """The typed checkpoint metadata of this task (thresholds come after training)."""
        return CtHeadMeta(
            preset=self.config.preset, input_size=self.config.size,
            context=self.config.context, synthetic_data=self.synthetic,
        )  # fmt: skip

    def checkpoint_meta(self) -> dict[str, Any]:
        """Plain metadata for the checkpoint (see :class:`CtHeadMeta`)."""
        return self.meta().to_dict()

    def build_model(self) -> nn.Module:
        """A fresh per-slice network for the configured preset and context."""
        return build_ct_head_net(self.config.preset, self.config.context)  # type: ignore[arg-type]

    def train_dataset(self) -> CtSliceDataset:
        """Every training slice, flipped left/right at random when ``hflip``."""
        return CtSliceDataset(
            self.train_records, size=self.config.size, context=self.config.context,
            hflip=self.config.hflip, seed=self.seed,
        )  # fmt: skip

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted BCE of the batch's slice logits."""
        return common.masked_bce(self.loss, model, batch)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Study-level mean AUROC on the validation split (no bootstrap)."""
        result = predict(model, self.val_records, self.meta(), device)
        auroc = auroc_with_ci(
            result.study_labels, result.study_probs, None, CT_HEAD_LABELS, n_boot=0
        )
        return {"study_mean_auroc": float(auroc["mean_auroc"] or 0.0)}

    def finalize(
        self, model: nn.Module, best_path: Path, out_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Path]]:
        """Thresholds from the validation slices (saved into the checkpoint), then the test
        report.

        Why slice level: a study is positive for a label when one of its slices is, so one
        threshold serves both (applied to the study maximum it calls exactly the studies
        with a slice above it), and the validation split has twenty times more slices than
        studies: study-level Youden thresholds on a few dozen well-separated studies sit at
        the top of the positives' range and miss subtypes on new studies.
        """
        device = next(model.parameters()).device
        val = predict(model, self.val_records, self.meta(), device)
        thresholds = choose_thresholds(
            val.slice_labels, val.slice_probs, None,
            method=self.config.threshold_method,  # type: ignore[arg-type]
        )  # fmt: skip
        state = load_checkpoint(best_path)
        meta = replace(
            CtHeadMeta.from_dict(state["meta"]),
            thresholds=tuple(float(t) for t in thresholds),
            threshold_method=self.config.threshold_method,
        )
        state["meta"] = meta.to_dict()
        save_checkpoint(best_path, state)
        test_records, report = _split(self.config, "test", self.seed)
        return evaluate(
            model, meta, test_records, out_dir, min_group_size=self.config.min_group_size,
            skipped=[*self.load_reports, report],
        )  # fmt: skip


@torch.no_grad()
def predict(
    model: nn.Module,
    records: Sequence[CtSeriesRecord],
    meta: CtHeadMeta,
    device: torch.device,
    *,
    with_cams: bool = False,
    batch_size: int = 64,
) -> CtPredictions:
    """Slice and study probabilities (and CAMs at the input size) for ``records``."""
    dataset = CtSliceDataset(records, size=meta.input_size, context=meta.context, cache=False)
    probs, cams = [], []
    with common.evaluating(model):
        for batch in DataLoader(dataset, batch_size=batch_size):
            prob, cam = common.probabilities(model, batch["image"].to(device), with_cams=with_cams)
            probs.append(prob)
            cams.append(cam)
    slice_study = np.array([series for series, _ in dataset.items], dtype=np.int64)
    slice_probs = np.concatenate(probs)
    study_probs = np.stack([slice_probs[slice_study == k].max(axis=0) for k in range(len(records))])
    return CtPredictions(
        slice_probs=slice_probs,
        slice_labels=np.concatenate([r.slice_labels for r in records]),
        slice_study=slice_study,
        study_probs=study_probs,
        study_labels=np.stack([r.study_labels for r in records]),
        cams=np.concatenate(cams) if with_cams else None,
    )


def weighted_log_loss(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    weights: Sequence[float] = CT_HEAD_LOSS_WEIGHTS,
    eps: float = 1e-7,
) -> float:
    """The RSNA 2019 challenge metric: per row, the weighted mean over labels of the binary
    log loss (``any`` weighted 2, subtypes 1), averaged over rows; probabilities clipped
    to ``[eps, 1 - eps]``."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_prob, dtype=np.float64), eps, 1 - eps)
    w = np.asarray(weights, dtype=np.float64)
    per_entry = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.mean((per_entry * w).sum(axis=1) / w.sum()))


def evaluate(
    model: nn.Module,
    meta: CtHeadMeta,
    records: Sequence[CtSeriesRecord],
    out_dir: Path,
    *,
    min_group_size: int = 10,
    skipped: Sequence[LoadReport] = (),
    n_boot: int = 1000,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The full test evaluation: AUROC with CIs per label at slice and study level, the RSNA
    weighted log loss, thresholds' TPR/FPR, calibration, the pointing game of the slice heat
    maps on positive slices, fairness by sex and age band (study level); writes the report."""
    if not records:
        raise ValueError("no series to evaluate")
    device = next(model.parameters()).device
    result = predict(model, records, meta, device, with_cams=True)
    assert result.cams is not None
    thresholds = np.asarray(meta.thresholds or [0.5] * len(CT_HEAD_LABELS))
    figures = common.label_figures(
        result.study_labels, result.study_probs, None, thresholds, CT_HEAD_LABELS,
        common.demographic_groups(records, race=False), n_boot=n_boot,
        min_group_size=min_group_size,
    )  # fmt: skip
    study = figures.auroc
    per_slice = auroc_with_ci(
        result.slice_labels, result.slice_probs, None, CT_HEAD_LABELS, n_boot=n_boot
    )
    slices = [s for r in records for s in r.slices]
    shapes = [_shape(r) for r in records for _ in r.slices]
    with_boxes = np.array([bool(s.boxes) and s.labels[0] > 0.5 for s in slices])
    chosen = np.flatnonzero(with_boxes)
    boxes = [
        common.boxes_in_input_space(slices[i].boxes, shapes[i], meta.input_size) for i in chosen
    ]
    pointing: dict[str, Any] = {"accuracy": None, "per_label": {"any": {"accuracy": None}}}
    if len(chosen):
        pointing = pointing_game(
            result.cams[chosen], boxes, (meta.input_size, meta.input_size),
            labels_present=result.slice_labels[chosen] > 0.5, labels=CT_HEAD_LABELS,
        )  # fmt: skip
    subtype_aurocs = [study["per_label"][name]["auroc"] for name in CT_HEAD_LABELS[1:]]
    known_subtypes = [a for a in subtype_aurocs if a is not None]
    metrics: dict[str, Any] = {
        "classification": study,
        "slice_classification": per_slice,
        "thresholds": figures.thresholds,
        "localization": {"pointing_game": pointing},
        "rsna_weighted_log_loss_slice": weighted_log_loss(result.slice_labels, result.slice_probs),
        "rsna_weighted_log_loss_study": weighted_log_loss(result.study_labels, result.study_probs),
        "study_auroc_any": study["per_label"]["any"]["auroc"],
        "study_mean_auroc_subtypes": float(np.mean(known_subtypes)) if known_subtypes else None,
        "n_series": len(records),
        "n_slices": len(slices),
        "skipped": common.skipped_lines(skipped),
        "model": {
            k: v for k, v in meta.to_dict().items() if k in ("preset", "input_size", "context")
        },
    }
    paths = write_report(
        out_dir, title="Head CT haemorrhage classifier evaluation (study level)", task="ct_head",
        metrics=metrics, fairness=figures.fairness, curves=figures.curves,
        calibration=figures.calibration, synthetic=meta.synthetic_data,
    )  # fmt: skip
    summary = {
        "study_mean_auroc": study["mean_auroc"],
        "study_auroc_any": metrics["study_auroc_any"],
        "study_mean_auroc_subtypes": metrics["study_mean_auroc_subtypes"],
        "slice_mean_auroc": per_slice["mean_auroc"],
        "rsna_weighted_log_loss": metrics["rsna_weighted_log_loss_slice"],
        "pointing_game_any": pointing["per_label"]["any"]["accuracy"],
        "ece": figures.calibration["ece"],
        "skipped": len(metrics["skipped"]),
    }
    return summary, paths


def _shape(record: CtSeriesRecord) -> tuple[int, int]:
    ds = pydicom.dcmread(record.slices[0].path, stop_before_pixels=True)
    return int(ds.Rows), int(ds.Columns)


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, CtHeadMeta]:
    """The trained network (eval mode) and its validated checkpoint metadata."""
    return common.load_trained(
        checkpoint, CtHeadMeta.from_dict,
        lambda meta: build_ct_head_net(meta.preset, meta.context), device,  # type: ignore[arg-type]
    )  # fmt: skip


def evaluate_checkpoint(
    checkpoint: Path, data: Path, split: str, out: Path, min_group_size: int, skip_bad: bool
) -> dict[str, Path]:
    """``medvision evaluate ct_head``: evaluate a checkpoint on a split, report also to MLflow."""
    from training import tracking

    model, meta = load_model(checkpoint)
    config = CtHeadTaskConfig(data=data, skip_bad=skip_bad)
    # The patient split is drawn from the training seed: the same test split as training's.
    records, report = _split(config, split, int(meta.train_config.get("seed", 0)))
    summary, paths = evaluate(
        model, meta, records, out, min_group_size=min_group_size, skipped=[report]
    )
    tracking.log_evaluation("ct_head", split, checkpoint, summary, paths)
    return paths
