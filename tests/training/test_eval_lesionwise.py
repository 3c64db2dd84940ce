"""BraTS 2023 lesion-wise Dice and HD95 on hand-made volumes whose values are worked out by hand.

Each case states the lesions (26-connected ground-truth components, merged when their
3-voxel dilations touch), the matches, and the arithmetic of the challenge's formula:
Dice = Σ lesion Dice / (lesions + FP); HD95 = (Σ lesion HD95 + 374·FP) / (lesions + FP).
"""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.lesionwise import (
    HD95_PENALTY_MM,
    LesionWiseScore,
    challenge_hd95,
    lesion_wise_regions,
    lesion_wise_score,
)
from training.evaluation.segmentation import summarise_cases

SHAPE = (48, 48, 48)
ISO = (1.0, 1.0, 1.0)


def cube(*corners: tuple[int, int, int, int]) -> np.ndarray:
    """A mask with one cube per (x, y, z, side)."""
    mask = np.zeros(SHAPE, dtype=bool)
    for x, y, z, side in corners:
        mask[x : x + side, y : y + side, z : z + side] = True
    return mask


BIG = (4, 4, 4, 5)  # 125 mm³, scored
MEDIUM = (30, 30, 30, 4)  # 64 mm³, scored, far from BIG
SMALL = (30, 4, 4, 3)  # 27 mm³ ≤ 50: not scored
SPECK = (4, 30, 40, 3)  # a prediction component far from every lesion

CASES = [
    # (name, prediction, truth, spacing, expected score)
    ("both empty", cube(), cube(), ISO, LesionWiseScore(1.0, 0.0, 0, 0, 0)),
    (
        "truth empty, one false positive",
        cube(SPECK),
        cube(),
        ISO,
        LesionWiseScore(0.0, HD95_PENALTY_MM, 0, 0, 1),
    ),
    (
        "prediction empty, one lesion missed",
        cube(),
        cube(BIG),
        ISO,
        LesionWiseScore(0.0, HD95_PENALTY_MM, 0, 1, 0),
    ),
    (
        # BIG found exactly (1, 0 mm), MEDIUM missed (0, 374), SPECK a false positive (0, 374):
        # Dice 1/3, HD95 (0 + 374 + 374) / 3.
        "one found, one missed, one false positive",
        cube(BIG, SPECK),
        cube(BIG, MEDIUM),
        ISO,
        LesionWiseScore(1 / 3, 2 * HD95_PENALTY_MM / 3, 1, 1, 1),
    ),
    (
        # SMALL (27 mm³) is not scored whether found or not, and its match is no false positive.
        "a lesion of 50 mm³ or less is not scored",
        cube(BIG, SMALL),
        cube(BIG, SMALL),
        ISO,
        LesionWiseScore(1.0, 0.0, 1, 0, 0),
    ),
    (
        "a small lesion missed costs nothing",
        cube(BIG),
        cube(BIG, SMALL),
        ISO,
        LesionWiseScore(1.0, 0.0, 1, 0, 0),
    ),
    (
        # 64 voxels of 0.5 mm are 8 mm³: not scored, and nothing else is there: Dice 1, HD95 0.
        "the volume threshold is in mm³",
        cube(),
        cube(MEDIUM),
        (0.5, 0.5, 0.5),
        LesionWiseScore(1.0, 0.0, 0, 0, 0),
    ),
    (
        # Two 4³ cubes 2 voxels apart: their 3-voxel dilations touch, so they are one lesion,
        # found exactly by a prediction of both (one lesion, Dice 1).
        "fragments whose dilations touch are one lesion",
        cube((10, 10, 10, 4), (16, 10, 10, 4)),
        cube((10, 10, 10, 4), (16, 10, 10, 4)),
        ISO,
        LesionWiseScore(1.0, 0.0, 1, 0, 0),
    ),
    (
        # The prediction half overlaps a 4³ lesion, shifted 2 voxels along z:
        # Dice 2·32 / (64 + 64) = 0.5; every surface point moves 2 mm: HD95 2.
        "a shifted prediction",
        cube((10, 10, 12, 4)),
        cube((10, 10, 10, 4)),
        ISO,
        LesionWiseScore(0.5, 2.0, 1, 0, 0),
    ),
]


@pytest.mark.parametrize(
    ("prediction", "truth", "spacing", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_lesion_wise_score(prediction, truth, spacing, expected) -> None:
    score = lesion_wise_score(prediction, truth, spacing)
    assert (score.true_positives, score.false_negatives, score.false_positives) == (
        expected.true_positives,
        expected.false_negatives,
        expected.false_positives,
    )
    assert score.dice == pytest.approx(expected.dice)
    assert score.hd95 == pytest.approx(expected.hd95, abs=1e-6)


def test_a_prediction_near_but_not_on_a_lesion_is_matched_not_a_false_positive() -> None:
    # A gap of one voxel: within the lesion's 3-voxel dilation, so it is the lesion's match
    # (Dice 0: no overlap), not a false positive.
    score = lesion_wise_score(cube((10, 10, 15, 4)), cube((10, 10, 10, 4)), ISO)
    assert (score.true_positives, score.false_negatives, score.false_positives) == (1, 0, 0)
    assert score.dice == 0.0
    assert 0.0 < score.hd95 < HD95_PENALTY_MM


def test_regions_and_shapes() -> None:
    truth = np.stack([cube(BIG), cube(BIG), cube(BIG, MEDIUM)])
    prediction = np.stack([cube(BIG), cube(), cube(BIG)])
    scores = lesion_wise_regions(prediction, truth, ISO)
    assert scores["ET"]["dice"] == 1.0
    assert scores["TC"]["dice"] == 0.0 and scores["TC"]["hd95"] == HD95_PENALTY_MM
    assert scores["WT"]["dice"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="3-D"):
        lesion_wise_score(np.zeros((4, 4)), np.zeros((4, 4)), (1, 1))


def test_summaries_report_the_challenge_convention_beside_monai_s() -> None:
    cases = [
        {
            "ET": {"dice": 1.0, "hd95": 2.0},
            "lesion_wise": {
                "ET": {
                    "dice": 1.0,
                    "hd95": 0.0,
                    "true_positives": 1,
                    "false_negatives": 0,
                    "false_positives": 0,
                }
            },
        },
        {
            "ET": {"dice": 0.0, "hd95": None, "reason": "prediction empty"},
            "lesion_wise": {
                "ET": {
                    "dice": 0.0,
                    "hd95": 374.0,
                    "true_positives": 0,
                    "false_negatives": 2,
                    "false_positives": 1,
                }
            },
        },
    ]
    summary = summarise_cases(cases, region_names=("ET",))["ET"]
    assert summary["hd95"]["mean"] == 2.0 and summary["hd95"]["n_undefined"] == 1
    assert summary["hd95_challenge"]["mean"] == pytest.approx((2.0 + 374.0) / 2)
    assert summary["lesion_wise"]["dice"]["mean"] == 0.5
    assert summary["lesion_wise"]["hd95"]["mean"] == 187.0
    assert summary["lesion_wise"]["false_negatives"] == 2
    assert challenge_hd95(None) == HD95_PENALTY_MM and challenge_hd95(3.5) == 3.5
