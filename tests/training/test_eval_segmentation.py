"""Segmentation evaluation: sliding-window inference, Dice/HD95 on hand-made spheres."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluation.segmentation import dice_hd95, sliding_window_predict, summarise_cases


def _sphere(
    shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float
) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    distance = sum((grid[i] - centre[i]) ** 2 for i in range(3))
    return distance <= radius**2


def _regions(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks)


def test_identical_spheres() -> None:
    sphere = _sphere((32, 32, 32), (16, 16, 16), 8)
    regions = _regions(sphere, sphere, sphere)
    result = dice_hd95(regions, regions, (1.0, 1.0, 1.0))
    assert set(result) == {"ET", "TC", "WT"}
    for entry in result.values():
        assert entry["dice"] == pytest.approx(1.0)
        assert entry["hd95"] == pytest.approx(0.0)


def test_shifted_sphere_hd95_scales_with_spacing() -> None:
    true = _sphere((40, 32, 32), (18, 16, 16), 8)
    shifted = _sphere((40, 32, 32), (20, 16, 16), 8)  # 2 voxels along the first axis
    regions_pred = _regions(shifted, shifted, shifted)
    regions_true = _regions(true, true, true)
    iso = dice_hd95(regions_pred, regions_true, (1.0, 1.0, 1.0))["WT"]
    assert iso["hd95"] == pytest.approx(2.0, abs=0.25)
    assert 0.6 < iso["dice"] < 0.95
    doubled = dice_hd95(regions_pred, regions_true, (2.0, 2.0, 2.0))["WT"]
    assert doubled["hd95"] == pytest.approx(2 * iso["hd95"])
    assert doubled["dice"] == pytest.approx(iso["dice"])


def test_anisotropic_spacing_scales_only_its_axis() -> None:
    # A flat slab shifted 2 voxels through its thin axis: the faces it moves dominate.
    true = np.zeros((24, 32, 32), dtype=bool)
    true[8:14, 4:28, 4:28] = True
    shifted = np.roll(true, 2, axis=0)
    regions_pred, regions_true = _regions(shifted, shifted, shifted), _regions(true, true, true)
    assert dice_hd95(regions_pred, regions_true, (1, 1, 1))["ET"]["hd95"] == pytest.approx(2.0)
    along = dice_hd95(regions_pred, regions_true, (2.5, 1.0, 1.0))["ET"]
    assert along["hd95"] == pytest.approx(5.0)
    across = dice_hd95(regions_pred, regions_true, (1.0, 3.0, 3.0))["ET"]
    assert across["hd95"] == pytest.approx(2.0)


def test_empty_region_conventions() -> None:
    sphere = _sphere((16, 16, 16), (8, 8, 8), 4)
    empty = np.zeros_like(sphere)
    result = dice_hd95(_regions(empty, empty, sphere), _regions(empty, sphere, empty), (1, 1, 1))
    assert result["ET"] == {"dice": 1.0, "hd95": 0.0}
    assert result["TC"]["dice"] == 0.0 and result["TC"]["hd95"] is None
    assert result["TC"]["reason"] == "prediction empty"
    assert result["WT"]["reason"] == "ground truth empty"


def test_dice_hd95_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="region channels"):
        dice_hd95(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 4)), (1, 1, 1))


def test_summarise_cases() -> None:
    cases = [
        {"case_id": "a", "ET": {"dice": 0.8, "hd95": 2.0}, "TC": {"dice": 0.9, "hd95": 1.0}},
        {
            "case_id": "b",
            "ET": {"dice": 0.0, "hd95": None, "reason": "x"},
            "TC": {"dice": 0.7, "hd95": 3.0},
        },
    ]
    summary = summarise_cases(cases)
    assert summary["ET"]["dice"]["mean"] == pytest.approx(0.4)
    assert summary["ET"]["dice"]["median"] == pytest.approx(0.4)
    assert summary["ET"]["dice"]["std"] == pytest.approx(0.4)
    assert summary["ET"]["hd95"]["n"] == 1 and summary["ET"]["hd95"]["n_undefined"] == 1
    assert summary["TC"]["hd95"]["mean"] == pytest.approx(2.0)
    assert summary["WT"]["dice"] == {"mean": None, "median": None, "std": None, "n": 0}


def test_sliding_window_predict_shape_and_range() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv3d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 3, 1)
    )
    model.train()
    volume = np.random.default_rng(0).normal(size=(4, 20, 20, 20)).astype(np.float32)
    probs = sliding_window_predict(model, volume, roi=(16, 16, 16), overlap=0.5, sw_batch_size=2)
    assert isinstance(probs, np.ndarray)
    assert probs.shape == (3, 20, 20, 20)
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    assert model.training  # mode restored
    again = sliding_window_predict(model, torch.from_numpy(volume), roi=(16, 16, 16))
    np.testing.assert_allclose(probs, again, atol=1e-6)
