"""``medvision_contract.cxr_outputs`` and the ``cxr_postprocess`` parameters: what the
``cxr`` ensemble serves, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from medvision_contract.cams import PostprocessParameters, cams_to_image
from medvision_contract.cxr_outputs import cxr_outputs
from medvision_contract.labels import CT_HEAD_LABELS, CXR_LABELS
from medvision_contract.preprocess import resize
from medvision_contract.triton import classifier_parameters
from tests.model_repository.helpers import load_model_module

pixels_module = load_model_module("cxr_preprocess", "cxr_pixels")
THRESHOLDS = np.full(14, 0.5, dtype=np.float32)


def _geometry(shape: tuple[int, int], size: int) -> np.ndarray:
    _, geometry = pixels_module.preprocess_pixels(
        np.zeros(shape, dtype=np.uint16), invert=False, size=size, mean=0.0, std=1.0
    )
    return np.asarray(geometry)


# (image rows x columns, cam_max_side, CAM grid): the longer side is cam_max_side, the
# aspect ratio the image's, also when that grid is larger than the image.
GRID_CASES = [
    ((1024, 1024), 256, (256, 256)),
    ((2048, 1536), 256, (256, 192)),
    ((600, 2000), 256, (77, 256)),
    ((128, 70), 256, (256, 140)),
]


@pytest.mark.parametrize(("shape", "side", "grid"), GRID_CASES)
def test_cams_cover_the_image_on_the_cam_max_side_grid(
    shape: tuple[int, int], side: int, grid: tuple[int, int]
) -> None:
    cams = np.random.default_rng(0).normal(size=(1, 14, 7, 7)).astype(np.float32)
    out = cxr_outputs(
        np.zeros((1, 14)), cams, _geometry(shape, 224),
        PostprocessParameters(THRESHOLDS, 224, side),
    )  # fmt: skip
    assert out["CAM"].shape == (14, *grid) and out["CAM"].dtype == np.uint8
    assert all(out["CAM"][k].min() == 0 and out["CAM"][k].max() == 255 for k in range(14))


def test_the_small_cam_is_the_full_size_cam_reduced() -> None:
    """Same maps as on the full image grid, shrunk: the viewer stretching the small map
    over the image shows what the full-size map showed (within a few grey levels)."""
    cams = np.random.default_rng(1).normal(size=(14, 7, 7)).astype(np.float32)
    geometry = _geometry((1024, 768), 224)
    parameters = PostprocessParameters(THRESHOLDS, 224, 256)
    small = cxr_outputs(np.zeros(14), cams, geometry, parameters)["CAM"]
    full = cams_to_image(cams, geometry, 224)
    assert full.shape == (14, 1024, 768)
    reduced = np.stack([resize(m, (256, 192)) for m in full.astype(np.float32)])
    assert np.abs(small.astype(np.float32) - reduced).max() <= 3
    assert small.nbytes * 16 == full.nbytes


def test_probabilities_and_thresholds() -> None:
    logits = np.linspace(-3, 3, 14, dtype=np.float32)[None]
    thresholds = np.full(14, 0.7, dtype=np.float32)
    out = cxr_outputs(
        logits, np.zeros((1, 14, 7, 7), np.float32), _geometry((100, 100), 64),
        PostprocessParameters(thresholds, 64, 32),
    )  # fmt: skip
    expected = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    np.testing.assert_allclose(out["PROBABILITIES"], expected, rtol=1e-6)
    assert out["PROBABILITIES"].dtype == np.float32
    np.testing.assert_array_equal(out["POSITIVE"], expected >= 0.7)
    assert not out["CAM"].any()  # constant maps carry no location: all zeros


@pytest.mark.parametrize(
    ("logits_shape", "cams_shape", "message"),
    [
        ((1, 13), (1, 14, 7, 7), "LOGITS"),
        ((1, 14), (1, 13, 7, 7), "CAMS"),
        ((1, 14), (2, 14, 7, 7), "CAMS"),
        ((1, 14), (1, 14, 0, 7), "CAMS"),
    ],
)
def test_inconsistent_shapes_are_refused(
    logits_shape: tuple[int, ...], cams_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cxr_outputs(
            np.zeros(logits_shape), np.zeros(cams_shape, np.float32), _geometry((64, 64), 64),
            PostprocessParameters(THRESHOLDS, 64, 32),
        )  # fmt: skip


def _config(**parameters: str) -> dict[str, object]:
    """A model config as Triton passes it to a Python model (JSON)."""
    return {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}


def test_postprocess_parameters_and_their_defaults() -> None:
    found = classifier_parameters(
        _config(thresholds="0.25", cam_max_side="128"), "cxr_postprocess", CXR_LABELS,
        input_size=224,
    )  # fmt: skip
    assert found.input_size == 224 and found.cam_max_side == 128
    np.testing.assert_array_equal(found.thresholds, np.full(14, 0.25, np.float32))
    defaults = classifier_parameters(
        _config(), "ct_head_postprocess", CT_HEAD_LABELS, input_size=256
    )
    assert defaults.cam_max_side == 256 and defaults.input_size == 256


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"labels": ",".join(reversed(CXR_LABELS))}, "labels must be"),
        ({"cam_max_side": "0"}, "cam_max_side 0 is not positive"),
        ({"thresholds": "0.5,0.5"}, "thresholds needs 14"),
    ],
)
def test_postprocess_parameters_that_would_mislabel_or_break_are_refused(
    parameters: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        classifier_parameters(_config(**parameters), "cxr_postprocess", CXR_LABELS, input_size=224)
