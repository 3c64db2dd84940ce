"""Response shapes of the viewer endpoints that are not images."""

from __future__ import annotations

import msgspec


class SliceCounts(msgspec.Struct):
    """How many slices each display plane has."""

    axial: int
    coronal: int
    sagittal: int


class SegmentationVolume(msgspec.Struct):
    """The grid behind a segmentation finding, for the slice viewer.

    ``shape`` and ``spacing_mm`` are in stored voxel order (the grid an edited mask must
    match); ``slices`` counts the slices of each plane as the slice endpoint shows them.
    """

    shape: list[int]
    spacing_mm: list[float]
    slices: SliceCounts
    channels: list[str]
    volumes_ml: dict[str, float]
