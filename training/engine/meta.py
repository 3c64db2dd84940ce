"""Typed checkpoint metadata: what a checkpoint promises about its network, validated on load.

A checkpoint stores its metadata as a plain dict (``torch.load(weights_only=True)`` reads
only plain types); :meth:`CtHeadMeta.from_dict` turns it back into a typed value or raises
``ValueError`` naming the bad field, so export and evaluation never read ``meta["..."]``
keys that may be missing or of the wrong type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from medvision_contract.ct_windows import CT_HEAD_WINDOWS
from medvision_contract.labels import CT_HEAD_LABELS

Window = tuple[str, float, float]


def _field(raw: Mapping[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    if key not in raw or raw[key] is None:
        if default is ...:
            raise ValueError(f"checkpoint metadata lacks {key!r}")
        return default
    value = raw[key]
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"checkpoint metadata {key!r} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class CtHeadMeta:
    """Metadata of a ``ct_head`` checkpoint.

    ``labels`` are ``CT_HEAD_LABELS``; slices are fitted into ``input_size`` squared, windowed
    with ``windows`` and stacked with ``context`` neighbours each side. ``thresholds`` (study
    level, one per label) are set after training from the validation split.
    ``training_run_id`` is the MLflow run the weights were trained in ("" when untracked).
    """

    preset: str
    input_size: int
    context: int
    synthetic_data: bool
    windows: tuple[Window, ...] = CT_HEAD_WINDOWS
    labels: tuple[str, ...] = CT_HEAD_LABELS
    training_run_id: str = ""
    thresholds: tuple[float, ...] | None = None
    threshold_method: str = ""
    train_config: dict[str, Any] = field(default_factory=dict)
    task: str = "ct_head"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CtHeadMeta:
        """Validate a checkpoint's metadata dict; ``ValueError`` names the first bad field."""
        if raw.get("task") != "ct_head":
            raise ValueError(f"checkpoint of task {raw.get('task')!r}, not 'ct_head'")
        labels = tuple(_field(raw, "labels", list | tuple))
        if labels != CT_HEAD_LABELS:
            raise ValueError(f"checkpoint labels {labels} are not {CT_HEAD_LABELS}")
        windows = tuple(
            (str(name), float(centre), float(width))
            for name, centre, width in _field(raw, "windows", list | tuple)
        )
        thresholds = _field(raw, "thresholds", list | tuple, None)
        if thresholds is not None and len(thresholds) != len(labels):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
        meta = cls(
            preset=_field(raw, "preset", str),
            input_size=_field(raw, "input_size", int),
            context=_field(raw, "context", int),
            synthetic_data=_field(raw, "synthetic_data", bool, False),
            windows=windows,
            labels=labels,
            training_run_id=_field(raw, "training_run_id", str, ""),
            thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
            threshold_method=_field(raw, "threshold_method", str, ""),
            train_config=dict(_field(raw, "train_config", dict, {})),
        )
        if meta.input_size < 16 or meta.context < 0:
            raise ValueError(f"bad input_size {meta.input_size} or context {meta.context}")
        return meta

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and scalars, as a checkpoint stores them."""
        plain = asdict(self)
        plain["windows"] = [list(w) for w in self.windows]
        plain["labels"] = list(self.labels)
        plain["thresholds"] = None if self.thresholds is None else list(self.thresholds)
        return plain
