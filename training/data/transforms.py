"""MONAI transform pipelines for chest X-rays and BraTS volumes, and X-ray intensity stats.

CXR pipelines work on ``{"image": float32 [1, H, W] in [0, 1]}``; BraTS pipelines on
``{"image": float32 [4, X, Y, Z], "label": [3, X, Y, Z] regions}``. Seed a pipeline with
``pipeline.set_random_state(seed)`` (or ``monai.utils.set_determinism``) for repeatable
augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    MapTransform,
    NormalizeIntensityd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    SpatialPadd,
    Transform,
)

from medvision_contract.preprocess import resize_with_padding
from training.data.datasets import read_xray_image
from training.data.records import CxrRecord

CXR_ROTATE_DEGREES = 10.0
CXR_ZOOM_RANGE = (0.9, 1.1)
CXR_AUGMENT_PROB = 0.5
BRATS_FLIP_PROB = 0.5


class ResizeWithPadding(Transform):
    """Fit each channel of a [C, H, W] image into ``size`` x ``size``, aspect kept, zero-padded.

    Wraps :func:`training.data.preprocess.resize_with_padding` (the same code as the
    Triton preprocessing); returns a float32 tensor.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The resized [C, size, size] float32 tensor."""
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if array.ndim != 3:
            raise ValueError(f"expected a [C, H, W] image, got shape {array.shape}")
        channels = [resize_with_padding(channel, self.size)[0] for channel in array]
        return torch.from_numpy(np.stack(channels))


class ResizeWithPaddingd(MapTransform):
    """Dictionary flavour of :class:`ResizeWithPadding`."""

    def __init__(self, keys: KeysCollection, size: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = ResizeWithPadding(size)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """A copy of ``data`` with each key's image resized."""
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.resizer(out[key])  # type: ignore[arg-type]
        return out


def cxr_train_transforms(size: int, mean: float, std: float, *, hflip: bool = True) -> Compose:
    """Resize with padding, random rotation (±10°), zoom (0.9–1.1), flip, then normalise."""
    steps = [
        ResizeWithPaddingd("image", size),
        # Rotation (±10°) and zoom (0.9–1.1) in one resampling: half the cost of two passes.
        RandAffined(
            "image",
            prob=CXR_AUGMENT_PROB,
            rotate_range=(math.radians(CXR_ROTATE_DEGREES),),
            scale_range=((CXR_ZOOM_RANGE[0] - 1, CXR_ZOOM_RANGE[1] - 1),),
            padding_mode="zeros",
        ),
    ]
    if hflip:
        steps.append(RandFlipd("image", prob=0.5, spatial_axis=1))
    steps.append(NormalizeIntensityd("image", subtrahend=mean, divisor=std))
    return Compose(steps)


def cxr_eval_transforms(size: int, mean: float, std: float) -> Compose:
    """Resize with padding, then normalise with the training mean and std."""
    return Compose(
        [
            ResizeWithPaddingd("image", size),
            NormalizeIntensityd("image", subtrahend=mean, divisor=std),
        ]
    )


def brats_train_transforms(roi: Sequence[int] = (96, 96, 96)) -> Compose:
    """Brain z-score, pad to ``roi`` if smaller, a tumour/background-balanced ``roi`` crop, flips.

    The crop is ``RandCropByPosNegLabeld`` with one sample: the pipeline returns a
    one-element list (``BratsDataset`` unwraps it).
    """
    keys = ("image", "label")
    return Compose(
        [
            NormalizeIntensityd("image", nonzero=True, channel_wise=True),
            SpatialPadd(keys, spatial_size=tuple(roi)),
            RandCropByPosNegLabeld(
                keys, label_key="label", spatial_size=tuple(roi), pos=1, neg=1, num_samples=1
            ),
            *(RandFlipd(keys, prob=BRATS_FLIP_PROB, spatial_axis=axis) for axis in range(3)),
        ]
    )


def brats_eval_transforms() -> Compose:
    """Brain z-score only (inference runs a sliding window over the whole volume)."""
    return Compose([NormalizeIntensityd("image", nonzero=True, channel_wise=True)])


def dataset_intensity_stats(
    records: Sequence[CxrRecord], n: int = 256, *, seed: int = 0
) -> tuple[float, float]:
    """Mean and std of pixel values in [0, 1] over up to ``n`` training images drawn by ``seed``.

    Every pixel of every drawn image counts equally (padding is not included).
    """
    if not records:
        raise ValueError("no records to compute intensity statistics from")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(records), size=min(n, len(records)), replace=False)
    total = total_sq = 0.0
    count = 0
    for index in sorted(chosen.tolist()):
        pixels = read_xray_image(records[index].image_path).astype(np.float64)
        total += float(pixels.sum())
        total_sq += float(np.square(pixels).sum())
        count += pixels.size
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    return mean, std
