"""``medvision_contract.ct_outputs``: what ct_head_postprocess serves, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from medvision_contract.cams import PostprocessParameters, longest_side_shape
from medvision_contract.ct_outputs import ct_head_outputs

SHAPE_CASES = [
    ((64, 64), 256, (256, 256)),
    ((40, 64), 256, (160, 256)),
    ((512, 300), 128, (128, 75)),
    ((3, 1000), 10, (1, 10)),
]


@pytest.mark.parametrize(("shape", "side", "expected"), SHAPE_CASES)
def test_longest_side_shape(shape: tuple[int, int], side: int, expected: tuple[int, int]) -> None:
    assert longest_side_shape(shape, side) == expected


def test_study_is_the_slice_maximum_and_negative_slices_get_empty_maps() -> None:
    logits = np.array(
        [[-4.0, -4, -4, -4, -4, -4], [2.0, 2, -4, -4, -4, -4], [0.0, -4, 1, -4, -4, -4]]
    )
    cams = np.zeros((3, 6, 4, 4), dtype=np.float32)
    cams[:, 0, 1, 2] = 5.0  # the any-map's peak
    geometry = np.array([40, 64, 0.5, 6, 0], dtype=np.float32)  # 40x64 slice in a 32 input
    thresholds = np.array([0.6, 0.5, 0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    out = ct_head_outputs(logits, cams, geometry, PostprocessParameters(thresholds, 32, 64))
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(out["SLICE_PROBABILITIES"], sigmoid, rtol=1e-6)
    np.testing.assert_allclose(out["PROBABILITIES"], sigmoid.max(axis=0), rtol=1e-6)
    assert out["POSITIVE"].tolist() == [True, True, True, False, False, False]
    heatmap = out["HEATMAP"]
    assert heatmap.shape == (3, 40, 64) and heatmap.dtype == np.uint8
    assert not heatmap[0].any() and not heatmap[2].any()  # any below 0.6 (0.018 and 0.5)
    assert heatmap[1].max() == 255


@pytest.mark.parametrize(
    ("logits_shape", "cams_shape", "message"),
    [
        ((3, 5), (3, 5, 4, 4), "LOGITS"),
        ((3, 6), (2, 6, 4, 4), "CAMS"),
        ((0, 6), (0, 6, 4, 4), "LOGITS"),
    ],
)
def test_inconsistent_shapes_are_refused(
    logits_shape: tuple[int, ...], cams_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ct_head_outputs(
            np.zeros(logits_shape),
            np.zeros(cams_shape),
            np.array([32, 32, 1, 0, 0]),
            PostprocessParameters(np.full(6, 0.5), 32, 64),
        )
