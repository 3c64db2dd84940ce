"""BraTS labels <-> nested regions, for numpy and torch, and region volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.regions import labels_to_regions, region_volumes_ml, regions_to_labels


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(9, 7, 5), (16, 16), (4, 6, 8, 2)])
def test_round_trip_is_identity_numpy(seed: int, shape: tuple[int, ...]) -> None:
    label_map = np.random.default_rng(seed).integers(0, 4, size=shape, dtype=np.uint8)
    regions = labels_to_regions(label_map)
    assert isinstance(regions, np.ndarray)
    assert regions.dtype == np.bool_
    assert regions.shape == (3, *shape)
    round_trip = regions_to_labels(regions)
    assert round_trip.dtype == np.uint8
    np.testing.assert_array_equal(round_trip, label_map)
    np.testing.assert_array_equal(regions_to_labels(regions.astype(np.float32)), label_map)


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_is_identity_torch(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    label_map = torch.randint(0, 4, (8, 9, 10), generator=generator, dtype=torch.uint8)
    regions = labels_to_regions(label_map)
    assert isinstance(regions, torch.Tensor)
    assert regions.dtype == torch.bool
    round_trip = regions_to_labels(regions)
    assert isinstance(round_trip, torch.Tensor)
    assert round_trip.dtype == torch.uint8
    assert torch.equal(round_trip, label_map)
    assert torch.equal(regions_to_labels(regions.float()), label_map)
    np.testing.assert_array_equal(regions.numpy(), labels_to_regions(label_map.numpy()))


def test_region_order_is_et_tc_wt() -> None:
    regions = labels_to_regions(np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(
        regions,
        [
            [False, False, False, True],  # ET: 3
            [False, True, False, True],  # TC: 1, 3
            [False, True, True, True],  # WT: 1, 2, 3
        ],
    )


def test_nesting_is_enforced_inside_whole_tumour() -> None:
    # Voxels:          0      1      2      3      4      5
    et = np.array([True, False, True, False, False, True])
    tc = np.array([False, True, False, False, True, True])
    wt = np.array([False, False, True, True, True, True])
    labels = regions_to_labels(np.stack([et, tc, wt]))
    # ET or TC outside WT is background; ET inside WT wins even without TC.
    np.testing.assert_array_equal(labels, [0, 0, 3, 2, 1, 3])


def test_probabilities_are_thresholded() -> None:
    probabilities = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.7, 0.2], [0.95, 0.8, 0.4]])
    assert regions_to_labels(probabilities).tolist() == [3, 1, 0]
    assert regions_to_labels(probabilities, threshold=0.3).tolist() == [3, 1, 3]


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="label 4 is BraTS 2024's resection cavity"):
        labels_to_regions(np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"found 0\.\.5$"):
        labels_to_regions(np.array([0, 5]))
    with pytest.raises(ValueError, match="3 channels"):
        regions_to_labels(np.zeros((4, 5, 5), dtype=bool))
    with pytest.raises(ValueError, match="spacing"):
        region_volumes_ml(np.zeros((2, 2, 2), dtype=np.uint8), (1.0, 1.0))


def test_empty_label_map() -> None:
    regions = labels_to_regions(np.zeros((0, 4), dtype=np.uint8))
    assert regions.shape == (3, 0, 4)
    assert region_volumes_ml(np.zeros((0, 4), dtype=np.uint8), (1.0, 1.0)) == {
        "ET": 0.0,
        "TC": 0.0,
        "WT": 0.0,
    }


def test_volumes_in_ml_with_anisotropic_spacing() -> None:
    label_map = np.zeros((10, 10, 10), dtype=np.uint8)
    label_map.flat[:10] = 3
    label_map.flat[10:15] = 1
    label_map.flat[15:22] = 2
    spacing = (0.5, 2.0, 4.0)  # 4 mm³ per voxel
    expected = {"ET": 10 * 4 / 1000, "TC": 15 * 4 / 1000, "WT": 22 * 4 / 1000}
    assert region_volumes_ml(label_map, spacing) == pytest.approx(expected)
    assert region_volumes_ml(torch.from_numpy(label_map), spacing) == pytest.approx(expected)
