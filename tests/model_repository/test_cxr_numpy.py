"""The CXR pre/post-processing numpy code against training's code and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medvision_contract import cams
from medvision_contract.preprocess import resize, undo_resize_with_padding, xray_to_float
from tests.model_repository.helpers import load_model_module, reference_bits, reference_cam_uint8
from training.data.transforms import cxr_eval_transforms

pixels_module = load_model_module("cxr_preprocess", "cxr_pixels")
cams_module = cams
MEAN, STD = 0.45, 0.27


@pytest.mark.parametrize("peak", [0, 1, 200, 255, 256, 1000, 4095, 4096, 65535])
def test_inferred_bits_follows_the_documented_rule(peak: int) -> None:
    pixels = np.array([[0, peak]], dtype=np.uint16)
    assert pixels_module.inferred_bits(pixels) == reference_bits(pixels)


@pytest.mark.parametrize("shape", [(60, 80), (97, 41), (64, 64), (300, 200)])
def test_8bit_pixels_match_training_eval_transforms(shape: tuple[int, int]) -> None:
    """An 8-bit image (training PNG, /255) goes through exactly the training eval path."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=shape).astype(np.uint16)
    pixels[0, 0] = 255
    image, geometry = pixels_module.preprocess_pixels(
        pixels, invert=False, size=64, mean=MEAN, std=STD
    )
    unit = pixels.astype(np.float32) / np.float32(255.0)
    expected = cxr_eval_transforms(64, MEAN, STD)({"image": unit[None]})["image"]
    assert image.shape == (1, 1, 64, 64) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], np.asarray(expected), atol=1e-6)
    scale = 64 / max(shape)
    new_h, new_w = max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
    np.testing.assert_allclose(
        geometry, [shape[0], shape[1], scale, (64 - new_h) // 2, (64 - new_w) // 2], rtol=1e-6
    )


@pytest.mark.parametrize("invert", [False, True])
def test_12bit_pixels_match_dicom_scaling(invert: bool) -> None:
    """A 12-bit image is scaled like ``xray_to_float`` with Bits Stored 12 (and inverted)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4096, size=(120, 90)).astype(np.uint16)
    pixels[5, 5] = 4000
    image, _ = pixels_module.preprocess_pixels(pixels, invert=invert, size=64, mean=MEAN, std=STD)
    unit = xray_to_float(
        pixels, photometric="MONOCHROME1" if invert else "MONOCHROME2", bits_stored=12
    )
    expected = cxr_eval_transforms(64, MEAN, STD)({"image": unit[None]})["image"]
    np.testing.assert_allclose(image[0], np.asarray(expected), atol=1e-6)


def test_pinned_bits_stored_overrides_the_inferred_depth() -> None:
    pixels = np.full((40, 40), 1023, dtype=np.uint16)
    image, _ = pixels_module.preprocess_pixels(
        pixels, invert=False, size=32, mean=0.0, std=1.0, bits_stored=12
    )
    assert image[0, 0, 16, 16] == pytest.approx(1023 / 4095, rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "message"), [((0, 5), "empty"), ((3, 4, 5), "2-D"), ((101, 100), "more than")]
)
def test_bad_pixels_are_rejected(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pixels_module.validate_pixels(np.zeros(shape, dtype=np.uint16), max_pixels=10_000)


@pytest.mark.parametrize(
    ("cam_shape", "size"), [((2, 2), (64, 64)), ((7, 7), (224, 224)), ((3, 5), (50, 81))]
)
def test_bicubic_matrices_match_torch(cam_shape: tuple[int, int], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    cams = rng.normal(size=(14, *cam_shape)).astype(np.float32)
    expected = F.interpolate(
        torch.from_numpy(cams)[None], size=size, mode="bicubic", align_corners=False
    )[0].numpy()
    rows = cams_module.bicubic_matrix(cam_shape[0], size[0])
    columns = cams_module.bicubic_matrix(cam_shape[1], size[1])
    np.testing.assert_allclose(rows @ cams @ columns.T, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "out"), [((64, 40), (90, 57)), ((64, 64), (20, 300)), ((5, 9), (5, 9))]
)
def test_resize_matrices_match_training_resize(
    shape: tuple[int, int], out: tuple[int, int]
) -> None:
    image = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    rows = cams_module.resize_matrix(shape[0], out[0])
    columns = cams_module.resize_matrix(shape[1], out[1])
    np.testing.assert_allclose(rows @ image @ columns.T, resize(image, out), atol=1e-5)


@pytest.mark.parametrize("original", [(90, 57), (128, 128), (20, 10), (31, 700), (600, 450)])
def test_cams_to_image_matches_the_torch_reference(original: tuple[int, int]) -> None:
    """Bicubic (torch) to the input size, crop the padding, resize, min-max per label."""
    rng = np.random.default_rng(3)
    cams = rng.normal(size=(14, 2, 2)).astype(np.float32)
    cams[3] = 1.5  # a constant map scales to zeros
    _, geometry = pixels_module.preprocess_pixels(
        np.zeros(original, dtype=np.uint16), invert=False, size=64, mean=0.0, std=1.0
    )
    upsampled = F.interpolate(
        torch.from_numpy(cams)[None], size=(64, 64), mode="bicubic", align_corners=False
    )[0].numpy()
    scale = 64 / max(original)
    pad = (int(geometry[3]), int(geometry[4]))
    restored = np.stack([undo_resize_with_padding(m, original, scale, pad) for m in upsampled])
    result = cams_module.cams_to_image(cams, geometry, 64)
    assert result.shape == (14, *original) and result.dtype == np.uint8
    assert np.abs(result.astype(int) - reference_cam_uint8(restored).astype(int)).max() <= 1
    assert not result[3].any()
    assert all(result[k].max() == 255 and result[k].min() == 0 for k in range(14) if k != 3)


def test_sigmoid_is_stable_and_exact() -> None:
    logits = np.array([-1000.0, -3.0, 0.0, 2.5, 1000.0], dtype=np.float32)
    expected = torch.sigmoid(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(cams_module.sigmoid(logits), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "geometry", [[0, 10, 1, 0, 0], [10.5, 10, 1, 0, 0], [10, 10, 1, 99, 0], [1, 2, 3, 4]]
)
def test_bad_geometry_is_rejected(geometry: list[float]) -> None:
    with pytest.raises(ValueError, match="GEOMETRY"):
        cams_module.geometry_fields(np.array(geometry, dtype=np.float32), 64)


def test_thresholds_parse_one_or_all() -> None:
    assert cams_module.parse_floats("0.3", 3, "t").tolist() == pytest.approx([0.3] * 3)
    assert cams_module.parse_floats("0.1, 0.2,0.3", 3, "t").tolist() == pytest.approx(
        [0.1, 0.2, 0.3]
    )
    with pytest.raises(ValueError, match="needs 3"):
        cams_module.parse_floats("0.1,0.2", 3, "t")
