"""Losses: masked, class-weighted BCE for multi-label CXR; Dice + focal for BraTS regions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses.dice import DiceFocalLoss as MonaiDiceFocalLoss
from torch import nn


def positive_class_weights(
    labels: torch.Tensor,
    mask: torch.Tensor,
    min_weight: float = 0.1,
    max_weight: float = 100.0,
) -> torch.Tensor:
    """Per-label ``pos_weight`` [L] = known negatives / known positives, from training labels.

    ``labels`` and ``mask`` are [N, L]; only entries with ``mask > 0`` are counted and a
    label counts as positive when ``> 0.5``. The ratio is clamped to
    ``[min_weight, max_weight]`` so a very rare label cannot dominate the loss. A label with
    no known positive gets weight 1.0 (no ratio can be estimated, so it is left unweighted);
    one with positives but no known negative gets ``min_weight``.
    """
    if labels.shape != mask.shape or labels.ndim != 2:
        raise ValueError(f"labels and mask must both be [N, L], got {labels.shape}, {mask.shape}")
    known = mask > 0
    positive = labels > 0.5
    positives = (known & positive).sum(dim=0).to(torch.float32)
    negatives = (known & ~positive).sum(dim=0).to(torch.float32)
    ratio = (negatives / positives.clamp_min(1.0)).clamp(min_weight, max_weight)
    return torch.where(positives > 0, ratio, torch.ones_like(ratio))


class MaskedWeightedBCE(nn.Module):
    """Binary cross-entropy with logits, class-weighted positives, ignoring unknown labels.

    Entries with ``mask == 0`` (label not reported) contribute nothing: they are neither
    negatives nor counted in the average, get zero gradient, and their target may hold any
    value, NaN included. The loss is the mean over known entries, and 0 (still attached to
    the graph) when a batch has none. With ``label_weights`` [L] it is the weighted mean
    (each known entry of label k counts ``label_weights[k]`` times), e.g. the RSNA
    challenge's weight 2 for ``any``.
    """

    pos_weight: torch.Tensor | None
    label_weights: torch.Tensor | None

    def __init__(
        self, pos_weight: torch.Tensor | None = None, label_weights: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.register_buffer("label_weights", label_weights)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for ``logits``, ``targets`` and ``mask``, all [B, L]."""
        if not logits.shape == targets.shape == mask.shape:
            raise ValueError(
                f"logits, targets and mask must share a shape, got "
                f"{logits.shape}, {targets.shape}, {mask.shape}"
            )
        known = mask > 0
        safe_targets = torch.where(known, targets, torch.zeros_like(targets)).to(logits.dtype)
        elementwise = F.binary_cross_entropy_with_logits(
            logits, safe_targets, pos_weight=self.pos_weight, reduction="none"
        )
        weights = known.to(elementwise.dtype)
        if self.label_weights is not None:
            weights = weights * self.label_weights.to(elementwise.dtype)
        masked = torch.where(known, elementwise * weights, torch.zeros_like(elementwise))
        return masked.sum() / weights.sum().clamp_min(1)


class DiceFocalLoss(nn.Module):
    """Dice + focal loss over sigmoid region channels (ET, TC, WT), from logits.

    Wraps ``monai.losses.DiceFocalLoss`` with ``sigmoid=True`` and every channel included
    (each region channel is foreground; there is no background channel). ``batch=True``
    computes Dice over the whole batch, so a patch without enhancing tumour does not give a
    near-maximal Dice loss for a few false-positive voxels.
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        gamma: float = 2.0,
        batch: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        self.loss = MonaiDiceFocalLoss(
            include_background=True,
            sigmoid=True,
            lambda_dice=lambda_dice,
            lambda_focal=lambda_focal,
            gamma=gamma,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss for logits and 0/1 region targets, both [B, 3, *spatial]."""
        loss: torch.Tensor = self.loss(logits, targets)
        return loss
