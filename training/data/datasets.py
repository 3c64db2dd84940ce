"""Torch datasets over loader records: decode, transform, and hand out tensors.

:class:`CxrDataset` items: ``{"image": float32 [1, S, S], "labels": [14], "mask": [14],
"index": int}``. :class:`BratsDataset` items: ``{"image": float32 [4, ...], "label":
float32 [3, ...] (ET, TC, WT regions; absent when the record has no seg), "spacing_mm":
[3], "index": int}``. :class:`CtSliceDataset` items are head CT slices. Images are decoded
lazily; a missing or corrupt file raises
DatasetError naming it.

With worker processes, load through ``monai.data.DataLoader`` (or pass
``worker_init_fn=monai.data.utils.worker_init_fn``) so each worker's random transforms get
their own seed; a plain torch DataLoader repeats the same augmentation in every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medvision_contract.ct_windows import ct_head_input
from medvision_contract.regions import labels_to_regions
from training.data.brats import read_brats_case
from training.data.errors import DatasetError
from training.data.records import BratsRecord, CxrRecord
from training.data.rsna_ich import CtSeriesRecord, read_ct_volume

Transform = Callable[[dict[Hashable, Any]], Any]
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_xray_image(path: Path) -> np.ndarray:
    """A radiograph file as float32 [H, W] in [0, 1].

    8-bit images scale by 255 and 16-bit by 65535; colour or palette images are converted
    to greyscale first. Raises DatasetError naming ``path`` when it is missing or corrupt.
    """
    try:
        with Image.open(path) as image:
            if image.mode in _SIXTEEN_BIT_MODES:
                pixels = np.asarray(image, dtype=np.float32)
                return np.clip(pixels / 65535.0, 0.0, 1.0).astype(np.float32)
            if image.mode == "F":
                return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
            grey = image if image.mode == "L" else image.convert("L")
            return np.asarray(grey, dtype=np.float32) / np.float32(255.0)
    except FileNotFoundError as exc:
        raise DatasetError(path, "image file not found") from exc
    except _PIL_ERRORS as exc:
        raise DatasetError(path, f"cannot decode image: {exc}") from exc


RecordT = TypeVar("RecordT")
DecodedT = TypeVar("DecodedT")


class _CachedRecords(Dataset[dict[str, Any]], Generic[RecordT, DecodedT]):
    """Loader records with an optional transform and, with ``cache``, the decoded items
    kept in memory (per worker process)."""

    def __init__(
        self,
        records: Sequence[RecordT],
        transform: Transform | None = None,
        *,
        cache: bool = False,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.cache = cache
        self._cached: dict[int, DecodedT] = {}

    def __len__(self) -> int:
        return len(self.records)


class CxrDataset(_CachedRecords[CxrRecord, np.ndarray]):
    """Chest X-ray records as ``{"image", "labels", "mask", "index"}`` tensors.

    ``transform`` receives ``{"image": float32 [1, H, W] in [0, 1]}`` (see
    ``cxr_train_transforms``); without one the image keeps its original size. ``cache``
    keeps decoded images in memory (per worker process), for small synthetic sets.
    """

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = self._cached.get(index)
        if image is None:
            image = read_xray_image(record.image_path)[None]
            if self.cache:
                self._cached[index] = image
        data = _apply(self.transform, {"image": image.copy() if self.cache else image})
        return {
            "image": _plain_tensor(data["image"]),
            "labels": torch.from_numpy(record.labels.astype(np.float32)),
            "mask": torch.from_numpy(record.mask.astype(np.float32)),
            "index": index,
        }


class BratsDataset(
    _CachedRecords[BratsRecord, tuple[dict[str, np.ndarray], tuple[float, float, float]]]
):
    """BraTS records as ``{"image", "label", "spacing_mm", "index"}`` tensors.

    ``transform`` receives ``{"image": float32 [4, X, Y, Z], "label": float32 [3, X, Y, Z]}``
    (``label`` only when the record has a seg); a transform that returns a one-element list
    (``RandCropByPosNegLabeld`` with ``num_samples=1``) is unwrapped. ``cache`` keeps
    decoded volumes in memory (per worker process), for small synthetic sets.
    """

    def __getitem__(self, index: int) -> dict[str, Any]:
        arrays, spacing = self._decoded(index)
        data = _apply(self.transform, {key: value.copy() for key, value in arrays.items()})
        item = {key: _plain_tensor(data[key]) for key in arrays}
        item["spacing_mm"] = torch.tensor(spacing, dtype=torch.float32)
        item["index"] = index
        return item

    def _decoded(self, index: int) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
        if index in self._cached:
            return self._cached[index]
        volume, seg, spacing = read_brats_case(self.records[index])
        arrays = {"image": volume}
        if seg is not None:
            arrays["label"] = labels_to_regions(seg).astype(np.float32)
        if self.cache:
            self._cached[index] = (arrays, spacing)
        return arrays, spacing


def _apply(transform: Transform | None, data: dict[Hashable, Any]) -> Mapping[Hashable, Any]:
    if transform is None:
        return data
    out = transform(data)
    if isinstance(out, list):
        if len(out) != 1:
            raise ValueError(f"transform returned {len(out)} samples; datasets take one")
        out = out[0]
    return out  # type: ignore[no-any-return]


def _plain_tensor(value: Any) -> torch.Tensor:
    """A plain float32 tensor (MONAI's MetaTensor stripped, so batches collate cheaply)."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor).to(torch.float32)
    return torch.as_tensor(np.asarray(value), dtype=torch.float32)


class CtSliceDataset(Dataset[dict[str, Any]]):
    """Head CT slices as ``{"image": float32 [(2k + 1) * 3, S, S], "labels": [6], "mask": [6],
    "index": int}``, one item per slice of every series.

    The network input is ``medvision_contract.ct_windows.ct_head_input`` of the series
    (the serving path's code). ``hflip`` mirrors left and right at random (training). Inputs
    are computed per series on first use and kept (per worker process) when ``cache``.
    """

    def __init__(
        self,
        records: Sequence[CtSeriesRecord],
        *,
        size: int,
        context: int,
        hflip: bool = False,
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.size, self.context, self.hflip, self.cache = size, context, hflip, cache
        self.items = [
            (r, s) for r, record in enumerate(self.records) for s in range(len(record.slices))
        ]
        self._cached: dict[int, np.ndarray] = {}
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def series_input(self, series: int) -> np.ndarray:
        """The network input [S, C, size, size] of series ``series``."""
        found = self._cached.get(series)
        if found is None:
            volume = read_ct_volume(self.records[series])
            found, _geometry = ct_head_input(volume, size=self.size, context=self.context)
            if self.cache:
                self._cached[series] = found
        return found

    def __getitem__(self, index: int) -> dict[str, Any]:
        series, slice_index = self.items[index]
        image = self.series_input(series)[slice_index]
        if self.hflip and self._rng.random() < 0.5:
            image = image[..., ::-1]
        labels = self.records[series].slices[slice_index].labels.astype(np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "labels": torch.from_numpy(labels),
            "mask": torch.ones_like(torch.from_numpy(labels)),
            "index": index,
        }
