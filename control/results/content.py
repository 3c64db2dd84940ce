"""What a signed-off case says, in the shape the DICOM result builders take.

The sending code collects these values from the database (findings, decisions, sign-off,
the stored de-identified source instances) and hands them to the pure builders in
:mod:`control.results.sr` and :mod:`control.results.seg`. The builders copy the patient
and study identifiers of ``source_images`` verbatim (MedVision's pseudonymous values); the
sending code swaps in the original identifiers afterwards, in memory.

Every UID of a result object is chosen by the caller, so a retry re-sends the same object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pydicom

__all__ = ["Algorithm", "BratsResult", "ClassificationReport", "LabelReading", "Verifier"]


@dataclass(frozen=True)
class Algorithm:
    """The served model that produced the finding (TID 4019 algorithm identification)."""

    name: str  # served model name, e.g. "cxr" or "brats"
    version: str  # the finding's model_version
    training_run: str | None  # MLflow run id
    synthetic: bool  # trained on synthetic data: the object says so


@dataclass(frozen=True)
class Verifier:
    """The radiologist who signed the case off."""

    name: str  # full_name or username: VerifyingObserverName
    organization: str  # VerifyingOrganization
    verified_at: datetime  # tz-aware UTC


@dataclass(frozen=True)
class LabelReading:
    """One label of a classification: the AI's output and the radiologist's decision on it."""

    label: str  # one of the model's labels (CXR: the 14 of ARCHITECTURE.md; head CT: the 6)
    probability: float  # AI probability 0..1
    ai_positive: bool  # AI said present (probability >= threshold)
    final_positive: bool  # present after the radiologist's decision
    decision: str  # "accepted" | "rejected" | "edited" | "none"
    reason: str | None  # the radiologist's reason (rejections/edits), may be None


@dataclass(frozen=True)
class ClassificationReport:
    """A classification finding (chest X-ray, head CT) after sign-off (or, preliminary, right
    after inference)."""

    source_images: Sequence[pydicom.Dataset]  # the stored images read; may lack PixelData
    readings: Sequence[LabelReading]
    algorithm: Algorithm
    verifier: Verifier | None  # None only when preliminary
    note: str | None  # sign-off note
    series_instance_uid: str  # chosen by the caller (a retry re-sends the same UIDs)
    sop_instance_uid: str
    preliminary: bool = False  # True: an UNVERIFIED SR made right after inference


@dataclass(frozen=True)
class BratsResult:
    """A brain MRI segmentation after sign-off: the mask in force and its region volumes."""

    source_images: Sequence[pydicom.Dataset]  # the stored FLAIR MR series (any slice order)
    labels: npt.NDArray[np.uint8]  # 0 background, 1 NCR, 2 ED, 3 ET; series_volume voxel order
    region_ml: Mapping[str, float]  # "enhancing_tumour", "tumour_core", "whole_tumour"
    mask_source: str  # "ai" or "edited" (the radiologist's edit is in force)
    algorithm: Algorithm
    verifier: Verifier
    note: str | None
    seg_series_uid: str
    seg_sop_uid: str
    sr_series_uid: str
    sr_sop_uid: str
