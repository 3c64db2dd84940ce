"""Masked weighted BCE, positive class weights and the Dice + focal segmentation loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import DiceFocalLoss, MaskedWeightedBCE, positive_class_weights


def test_positive_class_weights_count_only_known_labels() -> None:
    labels = torch.tensor(
        [
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0, 1.0],
        ]
    )
    mask = torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],  # labels 0 and 1 unknown for the last image
        ]
    )
    weights = positive_class_weights(labels, mask)
    assert weights.shape == (4,)
    assert weights.dtype == torch.float32
    # label 0: 1 known positive, 2 known negatives; label 1: no known positive -> 1.0;
    # label 2: 1 positive, 3 negatives; label 3: positives only -> clamped to min_weight.
    torch.testing.assert_close(weights, torch.tensor([2.0, 1.0, 3.0, 0.1]))


def test_positive_class_weights_are_clamped() -> None:
    labels = torch.zeros(1000, 2)
    labels[0] = 1.0
    labels[:500, 1] = 1.0
    weights = positive_class_weights(labels, torch.ones_like(labels), max_weight=50.0)
    torch.testing.assert_close(weights, torch.tensor([50.0, 1.0]))


def test_masked_bce_ignores_masked_entries() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    targets = torch.randint(0, 2, (4, 5)).float()
    mask = torch.ones(4, 5)
    mask[1, 2] = 0.0
    mask[3, 0] = 0.0
    loss_fn = MaskedWeightedBCE(pos_weight=torch.linspace(0.5, 3.0, 5))

    loss = loss_fn(logits, targets, mask)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[1, 2] == 0.0
    assert logits.grad[3, 0] == 0.0
    assert (logits.grad[mask > 0] != 0).all()

    changed = targets.clone()
    changed[1, 2] = 1.0 - changed[1, 2]
    changed[3, 0] = float("nan")
    torch.testing.assert_close(loss_fn(logits, changed, mask), loss)


def test_masked_bce_is_the_mean_over_known_entries() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 4)
    targets = torch.randint(0, 2, (3, 4)).float()
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)
    pos_weight = torch.tensor([2.0, 1.0, 4.0, 0.5])
    expected = F.binary_cross_entropy_with_logits(
        logits[mask], targets[mask], pos_weight=pos_weight.expand(3, 4)[mask]
    )
    torch.testing.assert_close(MaskedWeightedBCE(pos_weight)(logits, targets, mask), expected)
    unweighted = F.binary_cross_entropy_with_logits(logits[mask], targets[mask])
    torch.testing.assert_close(MaskedWeightedBCE()(logits, targets, mask), unweighted)


def test_masked_bce_with_nothing_known_is_zero_with_grad() -> None:
    logits = torch.randn(2, 3, requires_grad=True)
    loss = MaskedWeightedBCE()(logits, torch.ones(2, 3), torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert logits.grad is not None
    assert (logits.grad == 0).all()


def test_masked_bce_pos_weight_is_a_buffer() -> None:
    loss_fn = MaskedWeightedBCE(torch.ones(14))
    assert "pos_weight" in loss_fn.state_dict()
    with pytest.raises(ValueError, match="share a shape"):
        loss_fn(torch.zeros(2, 14), torch.zeros(2, 14), torch.zeros(2, 13))


def test_dice_focal_is_lower_for_a_perfect_prediction() -> None:
    torch.manual_seed(0)
    targets = (torch.rand(2, 3, 8, 8, 8) > 0.7).float()
    perfect = targets * 20.0 - 10.0
    random = torch.randn(2, 3, 8, 8, 8)
    loss_fn = DiceFocalLoss()
    perfect_loss = loss_fn(perfect, targets)
    random_loss = loss_fn(random, targets)
    assert perfect_loss.ndim == 0
    assert perfect_loss < 0.01
    assert perfect_loss < random_loss
