"""MONAI pipelines: output shapes and dtypes, seeded determinism, parity with numpy code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity
from PIL import Image

from training.data.preprocess import brain_zscore, resize_with_padding
from training.data.records import CxrRecord
from training.data.transforms import (
    ResizeWithPadding,
    ResizeWithPaddingd,
    brats_eval_transforms,
    brats_train_transforms,
    cxr_eval_transforms,
    cxr_train_transforms,
    dataset_intensity_stats,
)


def cxr_image(height: int = 40, width: int = 56) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, size=(1, height, width)).astype(np.float32)


def brats_case(shape: tuple[int, int, int] = (20, 18, 16)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    image = np.zeros((4, *shape), dtype=np.float32)
    image[:, 2:-2, 2:-2, 2:-2] = rng.uniform(50, 600, size=(4, *(s - 4 for s in shape)))
    label = np.zeros((3, *shape), dtype=np.float32)
    label[:, 8:12, 8:12, 6:10] = 1.0
    return {"image": image, "label": label}


def test_resize_with_padding_array_and_dict_flavours() -> None:
    image = cxr_image()
    out = ResizeWithPadding(32)(image)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 32, 32) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0].numpy(), resize_with_padding(image[0], 32)[0])
    data = ResizeWithPaddingd("image", 32)({"image": torch.from_numpy(image), "other": 5})
    assert data["image"].shape == (1, 32, 32) and data["other"] == 5
    with pytest.raises(ValueError):
        ResizeWithPadding(32)(image[0])


@pytest.mark.parametrize("hflip", [True, False])
def test_cxr_train_shapes_and_determinism(hflip: bool) -> None:
    pipeline = cxr_train_transforms(32, 0.5, 0.25, hflip=hflip)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert ("RandFlipd" in names) == hflip
    pipeline.set_random_state(seed=7)
    first = [pipeline({"image": cxr_image()})["image"] for _ in range(3)]
    pipeline.set_random_state(seed=7)
    second = [pipeline({"image": cxr_image()})["image"] for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        assert a.shape == (1, 32, 32) and a.dtype == torch.float32
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_cxr_eval_normalises_with_dataset_stats() -> None:
    image = cxr_image()
    out = cxr_eval_transforms(32, 0.5, 0.25)({"image": image})["image"]
    expected = (resize_with_padding(image[0], 32)[0] - 0.5) / 0.25
    np.testing.assert_allclose(np.asarray(out[0]), expected, atol=1e-5)


def test_brats_train_crops_pads_and_is_deterministic() -> None:
    pipeline = brats_train_transforms(roi=(16, 16, 24))  # smaller on two axes, larger on one
    pipeline.set_random_state(seed=3)
    first = pipeline(brats_case())
    pipeline.set_random_state(seed=3)
    second = pipeline(brats_case())
    assert isinstance(first, list) and len(first) == 1
    a, b = first[0], second[0]
    assert a["image"].shape == (4, 16, 16, 24) and a["label"].shape == (3, 16, 16, 24)
    assert a["image"].dtype == torch.float32
    assert torch.equal(torch.as_tensor(a["image"]), torch.as_tensor(b["image"]))
    assert torch.equal(torch.as_tensor(a["label"]), torch.as_tensor(b["label"]))


def test_brats_eval_matches_numpy_brain_zscore() -> None:
    case = brats_case()
    out = brats_eval_transforms()(case)["image"]
    np.testing.assert_allclose(np.asarray(out), brain_zscore(case["image"]), atol=1e-5)
    monai = NormalizeIntensity(nonzero=True, channel_wise=True)(case["image"])
    np.testing.assert_allclose(np.asarray(monai), brain_zscore(case["image"]), atol=1e-5)


def test_dataset_intensity_stats(tmp_path: Path) -> None:
    pixels = []
    records = []
    for index, value in enumerate((0, 51, 204, 255)):
        array = np.full((4, 6), value, dtype=np.uint8)
        array[0, 0] = 100
        Image.fromarray(array).save(tmp_path / f"{index}.png")
        pixels.append(array / 255.0)
        records.append(
            CxrRecord(
                image_path=tmp_path / f"{index}.png",
                image_id=str(index),
                patient_id=str(index),
                labels=np.zeros(14, np.float32),
                mask=np.ones(14, np.float32),
                age=None,
                sex=None,
                race=None,
            )
        )
    mean, std = dataset_intensity_stats(records, n=10)
    everything = np.concatenate([p.ravel() for p in pixels])
    assert mean == pytest.approx(everything.mean()) and std == pytest.approx(everything.std())
    sample = dataset_intensity_stats(records, n=2, seed=1)
    assert sample == dataset_intensity_stats(records, n=2, seed=1)
    with pytest.raises(ValueError):
        dataset_intensity_stats([])
