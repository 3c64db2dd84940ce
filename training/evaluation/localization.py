"""Weak localisation of class-activation maps against ground-truth boxes.

CAMs are ``[N, L, h, w]`` on any grid; boxes are in image pixels (``x``, ``y`` the top-left
corner, ``w``, ``h`` the size), with pixel ``(row, col)`` covering ``[col, col + 1) x
[row, row + 1)``. A CAM cell ``(i, j)`` maps to the image point
``((j + 0.5) * W / w, (i + 0.5) * H / h)``, its centre scaled to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medvision_contract.labels import CXR_LABELS


class BoxLike(Protocol):
    """Anything with a label (name or column index) and an ``x, y, w, h`` box in image pixels."""

    @property
    def label(self) -> str | int: ...

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...

    @property
    def w(self) -> float: ...

    @property
    def h(self) -> float: ...


ImageSize = tuple[int, int]


def _image_sizes(image_sizes: Sequence[ImageSize] | ImageSize, n_images: int) -> list[ImageSize]:
    """One ``(height, width)`` per image, from a list or a single size shared by all."""
    array = np.asarray(image_sizes, dtype=np.int64)
    if array.shape == (2,):
        return [(int(array[0]), int(array[1]))] * n_images
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] != n_images:
        raise ValueError(f"need one (height, width) or {n_images} of them; got shape {array.shape}")
    return [(int(h), int(w)) for h, w in array]


# NIH ChestX-ray14's BBox_List spells one finding differently from its label list.
_LABEL_ALIASES = {"infiltrate": "infiltration"}


def _normalise_name(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    return _LABEL_ALIASES.get(key, key)


def _label_index(label: str | int, labels: Sequence[str]) -> int | None:
    """Column index of a box label given as a name or an index; None when not a known label.

    Names match case-insensitively with spaces read as underscores, and NIH's "Infiltrate"
    matches "Infiltration".
    """
    if isinstance(label, int | np.integer):
        return int(label) if 0 <= int(label) < len(labels) else None
    wanted = _normalise_name(str(label))
    for index, name in enumerate(labels):
        if _normalise_name(name) == wanted:
            return index
    return None


def _boxes_by_label(
    image_boxes: Sequence[BoxLike], labels: Sequence[str]
) -> dict[int, list[BoxLike]]:
    """Boxes of one image grouped by label column index (unknown labels dropped)."""
    grouped: dict[int, list[BoxLike]] = {}
    for box in image_boxes:
        index = _label_index(box.label, labels)
        if index is not None:
            grouped.setdefault(index, []).append(box)
    return grouped


def _check_inputs(
    cams: np.ndarray, boxes: Sequence[Sequence[BoxLike]], labels: Sequence[str]
) -> None:
    if cams.ndim != 4:
        raise ValueError(f"cams must be [N, L, h, w]; got shape {cams.shape}")
    if len(boxes) != cams.shape[0]:
        raise ValueError(f"{len(boxes)} box lists for {cams.shape[0]} CAMs")
    if cams.shape[1] != len(labels):
        raise ValueError(f"{cams.shape[1]} CAM channels for {len(labels)} labels")


def _summary(hits: np.ndarray, totals: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    per_label = {
        name: {
            "accuracy": float(hits[i] / totals[i]),
            "hits": int(hits[i]),
            "total": int(totals[i]),
        }
        for i, name in enumerate(labels)
        if totals[i] > 0
    }
    total = int(totals.sum())
    return {
        "accuracy": float(hits.sum() / total) if total else None,
        "hits": int(hits.sum()),
        "total": total,
        "per_label": per_label,
    }


def pointing_game(
    cams: np.ndarray,
    boxes: Sequence[Sequence[BoxLike]],
    image_sizes: Sequence[ImageSize] | ImageSize,
    *,
    labels_present: np.ndarray | None = None,
    labels: Sequence[str] = CXR_LABELS,
    tolerance_px: float = 0.0,
) -> dict[str, Any]:
    """Pointing-game accuracy: does each CAM's peak fall inside a ground-truth box of its label?

    Only (image, label) pairs with at least one ground-truth box of that label count (and, when
    ``labels_present`` ``[N, L]`` is given, only those it marks present). The CAM argmax is
    mapped to image pixels (cell centre x image_size / cam_size); it is a hit when it lies
    inside any box of that label expanded by ``tolerance_px`` on every side. Returns
    ``{"accuracy", "hits", "total", "per_label": {name: {"accuracy", "hits", "total"}}}``;
    ``accuracy`` is None when no pair counts.
    """
    cams = np.asarray(cams, dtype=np.float64)
    _check_inputs(cams, boxes, labels)
    n_images, n_labels, cam_h, cam_w = cams.shape
    sizes = _image_sizes(image_sizes, n_images)
    hits = np.zeros(n_labels, dtype=np.int64)
    totals = np.zeros(n_labels, dtype=np.int64)
    for image, image_boxes in enumerate(boxes):
        height, width = sizes[image]
        for index, label_boxes in _boxes_by_label(image_boxes, labels).items():
            if labels_present is not None and not bool(labels_present[image, index]):
                continue
            row, col = np.unravel_index(int(np.argmax(cams[image, index])), (cam_h, cam_w))
            px = (col + 0.5) * width / cam_w
            py = (row + 0.5) * height / cam_h
            totals[index] += 1
            hits[index] += any(
                b.x - tolerance_px <= px <= b.x + b.w + tolerance_px
                and b.y - tolerance_px <= py <= b.y + b.h + tolerance_px
                for b in label_boxes
            )
    return _summary(hits, totals, labels)


def _upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one ``[h, w]`` CAM to ``[height, width]`` (cell centres aligned)."""
    if cam.shape == (height, width):
        return cam
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy().astype(np.float64)


def cam_to_box(
    cam: np.ndarray, image_size: ImageSize, *, threshold: float = 0.5
) -> tuple[float, float, float, float] | None:
    """Box ``(x, y, w, h)`` around the largest connected region of a CAM above ``threshold``.

    The CAM is upsampled to ``image_size`` (bilinear) and min-max normalised to [0, 1] first.
    None when the CAM is constant (no region stands out).
    """
    height, width = image_size
    upsampled = _upsample(np.asarray(cam, dtype=np.float64), height, width)
    low, high = float(upsampled.min()), float(upsampled.max())
    if not high > low:
        return None
    normalised = (upsampled - low) / (high - low)
    components, n_components = ndimage.label(normalised >= threshold)
    if n_components == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    rows, cols = np.nonzero(components == largest)
    x0, y0 = float(cols.min()), float(rows.min())
    return x0, y0, float(cols.max()) + 1 - x0, float(rows.max()) + 1 - y0


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0


def cam_box_iou(
    cams: np.ndarray,
    boxes: Sequence[Sequence[BoxLike]],
    image_sizes: Sequence[ImageSize] | ImageSize,
    *,
    threshold: float = 0.5,
    labels: Sequence[str] = CXR_LABELS,
) -> dict[str, Any]:
    """IoU between the box derived from each CAM (``cam_to_box``) and the ground-truth box.

    One value per (image, label) pair with a ground-truth box; with several boxes of a label in
    an image the best-matching one counts. A CAM giving no region scores 0. Returns
    ``{"mean_iou", "n", "per_label": {name: {"mean_iou", "n"}}}``; ``mean_iou`` is None when no
    pair counts.
    """
    cams = np.asarray(cams, dtype=np.float64)
    _check_inputs(cams, boxes, labels)
    sizes = _image_sizes(image_sizes, cams.shape[0])
    scores: dict[int, list[float]] = {}
    for image, image_boxes in enumerate(boxes):
        for index, label_boxes in _boxes_by_label(image_boxes, labels).items():
            predicted = cam_to_box(cams[image, index], sizes[image], threshold=threshold)
            best = 0.0
            if predicted is not None:
                best = max(box_iou(predicted, (b.x, b.y, b.w, b.h)) for b in label_boxes)
            scores.setdefault(index, []).append(best)
    every = [value for values in scores.values() for value in values]
    return {
        "mean_iou": float(np.mean(every)) if every else None,
        "n": len(every),
        "per_label": {
            labels[i]: {"mean_iou": float(np.mean(values)), "n": len(values)}
            for i, values in sorted(scores.items())
        },
    }
