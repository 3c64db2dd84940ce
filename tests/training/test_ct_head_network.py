"""The ct_head network: presets, shapes, exact CAMs and the study-level maximum."""

from __future__ import annotations

import pytest
import torch

from medvision_contract.ct_windows import channels_per_slice
from medvision_contract.labels import CT_HEAD_LABELS
from training.networks.ct_head import build_ct_head_net, study_logits

# (preset, context, input size, expected CAM side)
SHAPE_CASES = [
    ("tiny", 0, 32, 4),
    ("tiny", 1, 64, 8),
    ("demo", 1, 64, 8),
    ("densenet121", 0, 64, 2),
]


@pytest.mark.parametrize(("preset", "context", "size", "cam_side"), SHAPE_CASES)
def test_slice_logits_and_cams(preset: str, context: int, size: int, cam_side: int) -> None:
    net = build_ct_head_net(preset, context).eval()  # type: ignore[arg-type]
    slices = torch.rand(3, channels_per_slice(context), size, size)
    with torch.no_grad():
        logits, cams = net.forward_with_cam(slices)
        plain = net(slices)
    assert logits.shape == (3, len(CT_HEAD_LABELS))
    assert cams.shape == (3, len(CT_HEAD_LABELS), cam_side, cam_side)
    torch.testing.assert_close(plain, logits)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, atol=1e-5, rtol=1e-5)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown ct_head preset"):
        build_ct_head_net("huge")  # type: ignore[arg-type]


STUDY_CASES = [
    ([[0.0, 1.0], [2.0, -1.0], [5.0, 5.0]], [0, 0, 1], [[2.0, 1.0], [5.0, 5.0]]),
    ([[-3.0, -2.0]], [0], [[-3.0, -2.0]]),
    ([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]], [1, 1, 0], [[3.0, 3.0], [1.0, 1.0]]),
]


@pytest.mark.parametrize(("logits", "index", "expected"), STUDY_CASES)
def test_study_logit_is_the_maximum_over_its_slices(
    logits: list[list[float]], index: list[int], expected: list[list[float]]
) -> None:
    result = study_logits(torch.tensor(logits), torch.tensor(index))
    torch.testing.assert_close(result, torch.tensor(expected))
