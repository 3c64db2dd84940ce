"""Typed finding artefacts: which stored objects a finding of each model refers to.

A finding keeps its artefacts as a JSON object of strings (``Finding.artifacts``); these
classes are the only code that reads or writes that form, so a key is spelt once. Reading a
finding whose artefacts lack a field answers 404 ``artifact_not_found`` with the field's
name (an old or damaged row), never a ``KeyError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Self

from control.db.models import Finding
from control.errors import NotFoundError


@dataclass(frozen=True)
class _Artefacts:
    def stored(self) -> dict[str, str]:
        """The form kept in ``Finding.artifacts``."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def of(cls, finding: Finding) -> Self:
        """The artefacts of ``finding``; 404 ``artifact_not_found`` when one is missing."""
        stored = finding.artifacts or {}
        values: dict[str, str | None] = {}
        for item in fields(cls):
            value = stored.get(item.name)
            if value is None and item.default is not None:
                raise NotFoundError(
                    f"the finding has no {item.name} object",
                    code="artifact_not_found",
                    detail={"name": item.name},
                )
            values[item.name] = value
        return cls(**values)


@dataclass(frozen=True)
class CamArtefacts(_Artefacts):
    """A radiograph's label heat maps: one PNG atlas (``control.imaging.cams``) and the
    labels of its maps, comma-separated, in atlas order."""

    cams: str
    cam_labels: str

    @property
    def labels(self) -> list[str]:
        return self.cam_labels.split(",") if self.cam_labels else []


@dataclass(frozen=True)
class SegmentationArtefacts(_Artefacts):
    """A label map (NIfTI) and the 4-channel volume it was computed on (NIfTI; None on a
    finding that does not keep it)."""

    segmentation: str
    volume: str | None = None


@dataclass(frozen=True)
class SliceArtefacts(_Artefacts):
    """A series read slice by slice: the per-slice results (JSON, see
    :class:`control.served.ct_head.SliceTable`) and one heat map per slice (PNG atlas)."""

    slices: str
    heatmaps: str
