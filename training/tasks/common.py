"""What the training tasks share: loading a trained network, demographic groups, and the
multi-label classifiers' loss, per-batch probabilities and CAMs, thresholds table and box
geometry (``cxr`` and ``ct_head`` are both DenseNet classifiers with class activation maps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medvision_contract.labels import age_band
from medvision_contract.preprocess import padding_geometry
from training.data.records import Box, LoadReport
from training.engine.checkpoint import load_checkpoint
from training.evaluation.classification import (
    auroc_with_ci,
    calibration_error,
    rates_at_threshold,
    roc_curves,
)
from training.evaluation.fairness import classification_fairness
from training.networks.cxr import CxrNet

MetaT = TypeVar("MetaT")


def load_trained(
    checkpoint: Path,
    parse_meta: Callable[[Mapping[str, Any]], MetaT],
    build: Callable[[MetaT], nn.Module],
    device: str = "cpu",
) -> tuple[nn.Module, MetaT]:
    """The trained network of ``checkpoint`` (eval mode) and its metadata, validated by
    ``parse_meta`` (e.g. ``CxrMeta.from_dict``: ``ValueError`` names a missing or mistyped
    field), from which ``build`` makes the network."""
    state = load_checkpoint(checkpoint, map_location=device)
    meta = parse_meta(state["meta"])
    model = build(meta)
    model.load_state_dict(state["model"])
    return model.eval(), meta


def demographic_groups(records: Sequence[Any], *, race: bool = True) -> dict[str, list[Any]]:
    """The fairness groups of ``records`` (sex, age band and, where recorded, race)."""
    groups = {"sex": [r.sex for r in records], "age_band": [age_band(r.age) for r in records]}
    if race:
        groups["race"] = [r.race for r in records]
    return groups


def skipped_lines(reports: Sequence[LoadReport]) -> list[str]:
    """Every skipped row or file of the load reports, for the report's ``skipped`` list."""
    return [line for report in reports for line in report.skipped]


def masked_bce(
    loss: nn.Module, model: nn.Module, batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """``loss`` (a ``MaskedWeightedBCE``) of the model's logits for a batch with ``image``,
    ``labels`` and ``mask``."""
    logits = model(batch["image"])
    value: torch.Tensor = loss.to(logits.device)(logits.float(), batch["labels"], batch["mask"])
    return value


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def probabilities(
    model: nn.Module, images: torch.Tensor, *, with_cams: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sigmoid probabilities of a batch and, with ``with_cams``, its class activation maps
    upsampled (bicubic) to the input size."""
    cams = None
    if with_cams:
        assert isinstance(model, CxrNet)
        logits, cam = model.forward_with_cam(images)
        cams = F.interpolate(cam, size=images.shape[-2:], mode="bicubic").cpu().numpy()
    else:
        logits = model(images)
    return torch.sigmoid(logits.float()).cpu().numpy(), cams


def threshold_table(
    labels: Sequence[str], thresholds: np.ndarray, rates: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Per label: its threshold and the TPR, FPR and PPV there (``rates_at_threshold``)."""
    return {
        label: {
            "threshold": float(thresholds[k]),
            "tpr": float(rates["tpr"][k]),
            "fpr": float(rates["fpr"][k]),
            "ppv": float(rates["ppv"][k]),
        }
        for k, label in enumerate(labels)
    }


def boxes_in_input_space(boxes: Sequence[Box], shape: tuple[int, int], size: int) -> list[Box]:
    """Boxes on an image of ``shape`` mapped into the padded, resized network input."""
    scale, (pad_y, pad_x) = padding_geometry(shape, size)
    return [
        Box(b.label, b.x * scale + pad_x, b.y * scale + pad_y, b.w * scale, b.h * scale)
        for b in boxes
    ]


@dataclass(frozen=True)
class LabelFigures:
    """The multi-label classification figures of one evaluation, in the report's shapes."""

    #: ``auroc_with_ci``: per label and mean, with bootstrap CIs.
    auroc: dict[str, Any]
    #: Per label: threshold, TPR, FPR and PPV (:func:`threshold_table`).
    thresholds: dict[str, dict[str, float]]
    #: ``{"ece": ..., "bins": ...}``.
    calibration: dict[str, Any]
    #: ROC curves by label.
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    #: ``classification_fairness`` over ``groups``.
    fairness: dict[str, Any]


def label_figures(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    mask: np.ndarray | None,
    thresholds: np.ndarray,
    labels: Sequence[str],
    groups: Mapping[str, Sequence[Any]],
    *,
    n_boot: int,
    min_group_size: int,
) -> LabelFigures:
    """AUROC with CIs, the thresholds' rates, calibration, ROC curves and fairness of
    multi-label probabilities (``mask`` marks known entries; None: all known)."""
    rates = rates_at_threshold(y_true, y_prob, mask, thresholds)
    ece, bins = calibration_error(y_true, y_prob, mask)
    return LabelFigures(
        auroc=auroc_with_ci(y_true, y_prob, mask, labels, n_boot=n_boot),
        thresholds=threshold_table(labels, thresholds, rates),
        calibration={"ece": ece, "bins": bins},
        curves=roc_curves(y_true, y_prob, mask, labels=labels),
        fairness=classification_fairness(
            y_true, y_prob, mask, thresholds, groups, labels, min_group_size=min_group_size
        ),
    )
