"""CAM localisation: pointing game and CAM-box IoU on hand-made maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from training.evaluation.localization import box_iou, cam_box_iou, cam_to_box, pointing_game

LABELS = ("Mass", "Nodule", "Infiltration")


@dataclass(frozen=True)
class Box:
    label: str
    x: float
    y: float
    w: float
    h: float


def _peak_cam(grid: int, row: int, col: int) -> np.ndarray:
    cam = np.zeros((grid, grid))
    cam[row, col] = 1.0
    return cam


def test_pointing_game_hits_and_misses_across_scales() -> None:
    # Image 512x256 (H x W); CAM grid 16x16, so a cell is 32 px tall and 16 px wide.
    cams = np.zeros((2, 3, 16, 16))
    cams[0, 0] = _peak_cam(16, 4, 2)  # centre (x=40, y=144): inside the Mass box -> hit
    cams[0, 1] = _peak_cam(16, 12, 12)  # centre (x=200, y=400): outside the Nodule box -> miss
    cams[1, 0] = _peak_cam(16, 0, 0)  # no Mass box in image 1: not counted
    cams[1, 2] = _peak_cam(16, 8, 8)  # centre (x=136, y=272) in the "Infiltrate" box -> hit
    boxes = [
        [Box("Mass", 20, 100, 40, 60), Box("Nodule", 0, 0, 50, 50)],
        [Box("Infiltrate", 120, 250, 30, 30)],
    ]
    result = pointing_game(cams, boxes, (512, 256), labels=LABELS)
    assert (result["hits"], result["total"]) == (2, 3)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["per_label"]["Nodule"] == {"accuracy": 0.0, "hits": 0, "total": 1}
    assert result["per_label"]["Infiltration"]["hits"] == 1


def test_pointing_game_per_image_sizes_tolerance_and_presence() -> None:
    cams = np.zeros((2, 3, 8, 8))
    cams[0, 0] = _peak_cam(8, 1, 1)  # image 80x80: centre (15, 15)
    cams[1, 0] = _peak_cam(8, 1, 1)  # image 800x800: centre (150, 150)
    boxes = [[Box("Mass", 20, 20, 10, 10)], [Box("Mass", 140, 140, 20, 20)]]
    sizes = [(80, 80), (800, 800)]
    assert pointing_game(cams, boxes, sizes, labels=LABELS)["hits"] == 1
    assert pointing_game(cams, boxes, sizes, labels=LABELS, tolerance_px=5)["hits"] == 2
    present = np.array([[False, False, False], [True, False, False]])
    only_present = pointing_game(cams, boxes, sizes, labels=LABELS, labels_present=present)
    assert (only_present["hits"], only_present["total"]) == (1, 1)


def test_pointing_game_without_boxes_and_index_labels() -> None:
    cams = np.random.default_rng(0).random((2, 3, 4, 4))
    empty = pointing_game(cams, [[], []], (64, 64), labels=LABELS)
    assert empty == {"accuracy": None, "hits": 0, "total": 0, "per_label": {}}
    cams[0, 1] = _peak_cam(4, 0, 0)
    indexed = pointing_game(cams, [[Box(1, 0, 0, 16, 16)], []], (64, 64), labels=LABELS)  # type: ignore[arg-type]
    assert indexed["per_label"]["Nodule"]["hits"] == 1


def test_iou_is_one_for_cam_equal_to_box() -> None:
    cams = np.zeros((1, 3, 64, 64))
    cams[0, 0, 10:30, 20:50] = 1.0
    result = cam_box_iou(cams, [[Box("Mass", 20, 10, 30, 20)]], (64, 64), labels=LABELS)
    assert result["mean_iou"] == pytest.approx(1.0)
    assert result["per_label"]["Mass"]["n"] == 1


def test_iou_close_to_one_after_upsampling_and_zero_when_elsewhere() -> None:
    # 16x16 CAM with the box at rows 4-7, cols 8-11, on a 256x256 image: box 128..192 x 64..128.
    cams = np.zeros((1, 3, 16, 16))
    cams[0, 0, 4:8, 8:12] = 1.0
    cams[0, 1, 0:2, 0:2] = 1.0
    cams[0, 1, 10:15, 10:15] = 0.8  # the larger component wins
    boxes = [[Box("Mass", 128, 64, 64, 64), Box("Nodule", 0, 0, 20, 20)]]
    result = cam_box_iou(cams, boxes, [(256, 256)], labels=LABELS)
    assert result["per_label"]["Mass"]["mean_iou"] > 0.85
    assert result["per_label"]["Nodule"]["mean_iou"] == 0.0
    assert result["n"] == 2


def test_constant_cam_gives_no_box() -> None:
    assert cam_to_box(np.ones((8, 8)), (32, 32)) is None
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="box lists"):
        pointing_game(np.zeros((2, 3, 4, 4)), [[]], (8, 8), labels=LABELS)
