"""Hounsfield windowing of head CT slices (``medvision_contract.ct_windows``): case tables."""

from __future__ import annotations

import numpy as np
import pytest

from medvision_contract.ct_windows import (
    CT_HEAD_WINDOWS,
    channels_per_slice,
    ct_head_input,
    format_windows,
    neighbour_indices,
    parse_windows,
    validate_volume,
)

# (HU, expected brain 40/80, subdural 80/200, bone 600/2800), worked by hand:
# value = clip((HU - (centre - width / 2)) / width, 0, 1).
# Lower ends: brain 0 HU, subdural -20 HU, bone -800 HU.
WINDOW_CASES = [
    (-1000.0, (0.0, 0.0, 0.0)),
    (0.0, (0.0, 0.1, 800 / 2800)),
    (40.0, (0.5, 0.3, 840 / 2800)),
    (80.0, (1.0, 0.5, 880 / 2800)),
    (180.0, (1.0, 1.0, 980 / 2800)),
    (2000.0, (1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize(("hu", "expected"), WINDOW_CASES)
def test_each_window_is_a_channel(hu: float, expected: tuple[float, float, float]) -> None:
    slices, _geometry = ct_head_input(np.full((1, 16, 16), hu), size=16)
    assert slices.shape == (1, 3, 16, 16) and slices.dtype == np.float32
    np.testing.assert_allclose(slices[0, :, 8, 8], expected, atol=1e-6)


NEIGHBOUR_CASES = [
    (1, 0, [[0]]),
    (3, 0, [[0], [1], [2]]),
    (3, 1, [[0, 0, 1], [0, 1, 2], [1, 2, 2]]),
    (2, 2, [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]),
]


@pytest.mark.parametrize(("n", "context", "expected"), NEIGHBOUR_CASES)
def test_neighbours_repeat_the_edge_slices(n: int, context: int, expected: list[list[int]]) -> None:
    assert neighbour_indices(n, context).tolist() == expected


def test_context_stacks_neighbours_lowest_first() -> None:
    volume = np.stack([np.full((8, 8), hu) for hu in (0.0, 40.0, 80.0)])
    slices, _ = ct_head_input(volume, size=8, context=1)
    assert slices.shape == (3, channels_per_slice(1), 8, 8) == (3, 9, 8, 8)
    brain = slices[1, 0::3, 4, 4]  # the brain channel of slices 0, 1, 2 around slice 1
    np.testing.assert_allclose(brain, [0.0, 0.5, 1.0])


def test_padding_is_air_and_geometry_maps_pixels() -> None:
    volume = np.full((2, 20, 40), 40.0)
    slices, geometry = ct_head_input(volume, size=20)
    assert geometry.tolist() == [20.0, 40.0, 0.5, 5.0, 0.0]
    assert np.all(slices[:, :, :5] == 0.0) and np.all(slices[:, :, 15:] == 0.0)
    np.testing.assert_allclose(slices[0, 0, 6:14], 0.5, atol=1e-6)


def test_windows_round_trip_through_config_text() -> None:
    assert parse_windows(format_windows()) == CT_HEAD_WINDOWS
    assert format_windows() == "brain:40:80,subdural:80:200,bone:600:2800"
    with pytest.raises(ValueError, match="positive width"):
        parse_windows("brain:40:0")


@pytest.mark.parametrize(
    ("shape", "spacing", "message"),
    [
        ((4, 4), (1, 1, 1), "non-empty"),
        ((0, 4, 4), (1, 1, 1), "non-empty"),
        ((2, 4, 4), (1, 1), "SPACING_MM"),
        ((2, 4, 4), (1, float("nan"), 1), "SPACING_MM"),
        ((2, 40, 40), (1, 1, 1), "more than"),
    ],
)
def test_bad_volumes_are_refused(
    shape: tuple[int, ...], spacing: tuple[float, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_volume(np.zeros(shape, np.int16), np.array(spacing), max_voxels=1000)
