"""Typed checkpoint metadata (``training.engine.meta``): round trips and named bad fields."""

from __future__ import annotations

from typing import Any

import pytest

from medvision_contract.labels import BRATS_REGIONS, CT_HEAD_LABELS, CXR_LABELS
from training.engine.meta import BratsMeta, CtHeadMeta, CxrMeta, checkpoint_meta

RAW: dict[str, dict[str, Any]] = {
    "cxr": {"task": "cxr", "labels": list(CXR_LABELS), "preset": "tiny", "input_size": 64,
            "mean": 0.45, "std": 0.22, "synthetic_data": True, "thresholds": [0.5] * 14,
            "threshold_method": "youden", "training_run_id": "run-1"},
    "brats": {"task": "brats", "regions": list(BRATS_REGIONS), "preset": "tiny", "roi": 16,
              "threshold": 0.4, "normalisation": "z-score", "synthetic_data": False},
    "ct_head": {"task": "ct_head", "labels": list(CT_HEAD_LABELS), "preset": "tiny",
                "input_size": 64, "context": 1, "synthetic_data": True,
                "windows": [["brain", 40.0, 80.0], ["subdural", 80.0, 200.0],
                            ["bone", 600.0, 2800.0]],
                "training_run_id": "run-2", "train_config": {"epochs": 1}},
}  # fmt: skip
TYPES = {"cxr": CxrMeta, "brats": BratsMeta, "ct_head": CtHeadMeta}


@pytest.mark.parametrize("kind", list(RAW))
def test_round_trip(kind: str) -> None:
    typed = checkpoint_meta(kind, RAW[kind])
    assert isinstance(typed, TYPES[kind])
    assert typed.to_dict() == {"training_run_id": "", "train_config": {}, **RAW[kind]}
    assert TYPES[kind].from_dict(typed.to_dict()) == typed


BAD = [
    ("cxr", {"input_size": "64"}, "'input_size' must be int"),
    ("cxr", {"mean": None, "std": True}, "lacks 'mean'"),
    ("cxr", {"thresholds": [0.5] * 3}, "3 thresholds for 14 labels"),
    ("cxr", {"labels": ["Mass"]}, "labels"),
    ("brats", {"roi": 1.5}, "'roi' must be int"),
    ("brats", {"regions": ["WT", "TC", "ET"]}, "regions"),
    ("ct_head", {"context": -1}, "context"),
    ("ct_head", {"training_run_id": 7}, "'training_run_id' must be str"),
    ("ct_head", {"task": "cxr"}, "not 'ct_head'"),
]


@pytest.mark.parametrize(("kind", "change", "message"), BAD)
def test_bad_fields_are_named(kind: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkpoint_meta(kind, RAW[kind] | change)
