"""Typed checkpoint metadata: what a checkpoint promises about its network, validated on load.

A checkpoint stores its metadata as a plain dict (``torch.load(weights_only=True)`` reads
only plain types); ``<Kind>Meta.from_dict`` turns it back into a typed value or raises
``ValueError`` naming the bad field, and ``to_dict`` gives the plain form back (optional
fields that are unset are left out). :func:`checkpoint_meta` picks the class by task.
Every kind records ``training_run_id``, the MLflow run the weights were trained in ("" when
untracked), which export writes into ``config.pbtxt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from medvision_contract.ct_windows import CT_HEAD_WINDOWS
from medvision_contract.labels import BRATS_REGIONS, CT_HEAD_LABELS, CXR_LABELS

Window = tuple[str, float, float]
_MISSING: Any = object()


def _field(
    raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _MISSING
) -> Any:
    """``raw[key]`` checked against ``kind`` (an int is accepted as a float); ``default``
    when absent or None, or ``ValueError`` naming the key when there is no default."""
    if key not in raw or raw[key] is None:
        if default is _MISSING:
            raise ValueError(f"checkpoint metadata lacks {key!r}")
        return default
    value = raw[key]
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"checkpoint metadata {key!r} must be {name}, got {value!r}")
    return value


def _names(raw: Mapping[str, Any], key: str, expected: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(_field(raw, key, (list, tuple), list(expected)))
    if names != expected:
        raise ValueError(f"checkpoint {key} {names} are not {expected}")
    return names


def _thresholds(raw: Mapping[str, Any], count: int) -> tuple[float, ...] | None:
    found = _field(raw, "thresholds", (list, tuple), None)
    if found is None:
        return None
    if len(found) != count:
        raise ValueError(f"{len(found)} thresholds for {count} labels")
    return tuple(float(t) for t in found)


@dataclass(frozen=True, kw_only=True)
class CheckpointMeta:
    """What every MedVision checkpoint records, whatever its task."""

    task: ClassVar[str] = ""
    preset: str
    synthetic_data: bool = False
    training_run_id: str = ""
    train_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _common(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        if raw.get("task") != cls.task:
            raise ValueError(f"checkpoint of task {raw.get('task')!r}, not {cls.task!r}")
        return {
            "preset": _field(raw, "preset", str),
            "synthetic_data": _field(raw, "synthetic_data", bool, False),
            "training_run_id": _field(raw, "training_run_id", str, ""),
            "train_config": dict(_field(raw, "train_config", dict, {})),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and scalars, as a checkpoint stores them (unset optionals left out)."""
        plain: dict[str, Any] = {"task": self.task}
        for key, value in asdict(self).items():
            if value is None:
                continue
            plain[key] = (
                [list(v) if isinstance(v, tuple) else v for v in value]
                if isinstance(value, tuple)
                else value
            )
        return plain


@dataclass(frozen=True, kw_only=True)
class CxrMeta(CheckpointMeta):
    """A chest X-ray checkpoint: input size, normalisation, optional per-label thresholds."""

    task: ClassVar[str] = "cxr"
    input_size: int
    mean: float
    std: float
    labels: tuple[str, ...] = CXR_LABELS
    thresholds: tuple[float, ...] | None = None
    threshold_method: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CxrMeta:
        """Validate a ``cxr`` checkpoint's metadata; ``ValueError`` names the bad field."""
        labels = _names(raw, "labels", CXR_LABELS)
        return cls(
            **cls._common(raw),
            input_size=_field(raw, "input_size", int),
            mean=_field(raw, "mean", float),
            std=_field(raw, "std", float),
            labels=labels,
            thresholds=_thresholds(raw, len(labels)),
            threshold_method=_field(raw, "threshold_method", str, None),
        )


@dataclass(frozen=True, kw_only=True)
class BratsMeta(CheckpointMeta):
    """A BraTS checkpoint: training crop, region threshold and normalisation."""

    task: ClassVar[str] = "brats"
    roi: int
    regions: tuple[str, ...] = BRATS_REGIONS
    threshold: float = 0.5
    normalisation: str = ""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BratsMeta:
        """Validate a ``brats`` checkpoint's metadata; ``ValueError`` names the bad field."""
        return cls(
            **cls._common(raw),
            roi=_field(raw, "roi", int),
            regions=_names(raw, "regions", BRATS_REGIONS),
            threshold=_field(raw, "threshold", float, 0.5),
            normalisation=_field(raw, "normalisation", str, ""),
        )


@dataclass(frozen=True, kw_only=True)
class CtHeadMeta(CheckpointMeta):
    """A ``ct_head`` checkpoint.

    Slices are fitted into ``input_size`` squared, windowed with ``windows`` and stacked
    with ``context`` neighbours each side; ``thresholds`` (one per label, chosen on the
    validation slices and applied to slices and to the study maximum alike) are set after
    training.
    """

    task: ClassVar[str] = "ct_head"
    input_size: int
    context: int
    windows: tuple[Window, ...] = CT_HEAD_WINDOWS
    labels: tuple[str, ...] = CT_HEAD_LABELS
    thresholds: tuple[float, ...] | None = None
    threshold_method: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CtHeadMeta:
        """Validate a ``ct_head`` checkpoint's metadata; ``ValueError`` names the bad field."""
        labels = _names(raw, "labels", CT_HEAD_LABELS)
        meta = cls(
            **cls._common(raw),
            input_size=_field(raw, "input_size", int),
            context=_field(raw, "context", int),
            windows=tuple(
                (str(name), float(centre), float(width))
                for name, centre, width in _field(raw, "windows", (list, tuple))
            ),
            labels=labels,
            thresholds=_thresholds(raw, len(labels)),
            threshold_method=_field(raw, "threshold_method", str, None),
        )
        if meta.input_size < 16 or meta.context < 0:
            raise ValueError(f"bad input_size {meta.input_size} or context {meta.context}")
        return meta


META_TYPES: dict[str, type[CxrMeta] | type[BratsMeta] | type[CtHeadMeta]] = {
    "cxr": CxrMeta,
    "brats": BratsMeta,
    "ct_head": CtHeadMeta,
}


def checkpoint_meta(kind: str, raw: Mapping[str, Any]) -> CxrMeta | BratsMeta | CtHeadMeta:
    """The typed metadata of a ``kind`` checkpoint; ``ValueError`` for another task or a bad
    field."""
    if kind not in META_TYPES:
        raise ValueError(f"unknown model kind {kind!r}")
    return META_TYPES[kind].from_dict(raw)
