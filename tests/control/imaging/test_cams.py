"""Packing the CAMs of all labels into one image and reading one back."""

from __future__ import annotations

import numpy as np
import pytest

from control.errors import InvalidInputError
from control.imaging.cams import pack_cams, unpack_cam


def _block_means(cam: np.ndarray, block: int) -> np.ndarray:
    """Rounded means of ``block`` x ``block`` tiles, written independently of the resize."""
    rows, columns = cam.shape[0] // block, cam.shape[1] // block
    tiles = cam[: rows * block, : columns * block].reshape(rows, block, columns, block)
    return np.rint(tiles.astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "block"),
    [((1024, 768), 8), ((256, 192), 2), ((256, 256), 2)],
    ids=["full-image-cam", "served-portrait", "served-square"],
)
def test_pack_averages_each_map_down_and_unpack_returns_it(shape, block):
    rng = np.random.default_rng(0)
    cams = rng.integers(0, 256, (14, *shape), dtype=np.uint8)
    atlas = pack_cams(cams, max_side=128)
    assert atlas.shape == (14 * shape[0] // block, shape[1] // block)
    for index in (0, 5, 13):
        tile = unpack_cam(atlas, index, 14)
        assert np.abs(tile.astype(int) - _block_means(cams[index], block).astype(int)).max() <= 1


def test_small_maps_are_kept_whole():
    cams = np.arange(2 * 6 * 4, dtype=np.uint8).reshape(2, 6, 4)
    atlas = pack_cams(cams, max_side=128)
    np.testing.assert_array_equal(unpack_cam(atlas, 1, 2), cams[1])


@pytest.mark.parametrize(
    ("atlas", "index", "count", "code"),
    [
        (np.zeros((10, 4), np.uint8), 0, 3, "corrupt_cam"),
        (np.zeros((12, 4), np.uint8), 3, 3, "cam_not_found"),
        (np.zeros((12, 4), np.uint8), -1, 3, "cam_not_found"),
    ],
)
def test_unpack_rejects_what_does_not_fit(atlas, index, count, code):
    with pytest.raises(InvalidInputError) as error:
        unpack_cam(atlas, index, count)
    assert error.value.code == code


def test_pack_rejects_non_uint8_maps():
    with pytest.raises(InvalidInputError) as error:
        pack_cams(np.zeros((2, 8, 8), np.float32))
    assert error.value.code == "invalid_image"
