"""Factories and validator runners shared by the DICOM result object tests.

Inputs are generated (no patient data): DX radiographs from ``tests.fixtures.dx`` and a FLAIR
phantom series from ``tests.fixtures.mr_series``, de-identified the way MedVision stores
instances (:func:`control.dicom.deid.deidentify`: pseudonymous patient and UIDs, shifted
dates) so the builders copy what they would copy in production.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from control.dicom.deid import deidentify
from control.imaging.volumes import series_volume
from control.results.codes import CXR_FINDINGS
from control.results.content import (
    Algorithm,
    BratsResult,
    ClassificationReport,
    LabelReading,
    Verifier,
)
from tests.fixtures.dx import chest_dx
from tests.fixtures.mr_series import phantom_series

VERIFIED_AT = datetime(2026, 3, 4, 10, 11, 12, tzinfo=UTC)
VERIFIER = Verifier(
    name="Jane Radiologist", organization="Example Hospital", verified_at=VERIFIED_AT
)
DEID_KEY = b"results-tests-key"
STUDY_UID = "2.25.1000000000000000000000000000001"
DECISIONS = ("accepted", "rejected", "edited", "none")
#: FLAIR phantom grid: rows, columns, slices; rows != columns so a transposed mask fails.
FLAIR_SHAPE = (10, 12, 6)
#: Sphere voxels (phantom intensity above this after the rescale) form the tumour.
TUMOUR_THRESHOLD = 600.0


def stored_instance(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` as MedVision stores it: de-identified by :func:`control.dicom.deid.deidentify`."""
    return deidentify(ds, DEID_KEY).dataset


def dx_instance(*, seed: int = 0, library_attributes: bool = True) -> pydicom.Dataset:
    """A stored 16x16 DX chest radiograph; ``library_attributes`` adds PatientOrientation
    and ImagerPixelSpacing (a DX has them; a CR may not)."""
    ds = stored_instance(pydicom.dcmread(io.BytesIO(chest_dx(16, seed=seed, study_uid=STUDY_UID))))
    if library_attributes:
        ds.PatientOrientation = ["L", "F"]
        ds.ImagerPixelSpacing = [0.14, 0.14]
    return ds


def algorithm(
    name: str = "cxr", *, synthetic: bool = True, run: str | None = "run-7f3a"
) -> Algorithm:
    return Algorithm(name=name, version="3", training_run=run, synthetic=synthetic)


def readings(decisions: Sequence[str] = DECISIONS) -> list[LabelReading]:
    """One reading per CXR label, cycling through ``decisions``; rejections and edits have
    a reason."""
    out = []
    for index, label in enumerate(CXR_FINDINGS):
        decision = decisions[index % len(decisions)]
        ai_positive = index % 2 == 0
        final = {"accepted": ai_positive, "rejected": False, "edited": True}.get(
            decision, ai_positive
        )
        out.append(
            LabelReading(
                label=label,
                probability=round(0.05 + index * 0.0625, 4),
                ai_positive=ai_positive,
                final_positive=final,
                decision=decision,
                reason=f"reason for {label}" if decision in ("rejected", "edited") else None,
            )
        )
    return out


def cxr_report(**overrides: object) -> ClassificationReport:
    values: dict[str, object] = {
        "source_images": [dx_instance()],
        "readings": readings(),
        "algorithm": algorithm(),
        "verifier": VERIFIER,
        "note": "Signed off: no acute findings beyond those listed.",
        "series_instance_uid": "2.25.2000000000000000000000000000001",
        "sop_instance_uid": "2.25.2000000000000000000000000000002",
    }
    values.update(overrides)
    return ClassificationReport(**values)  # type: ignore[arg-type]


def flair_series() -> list[pydicom.Dataset]:
    """A stored FLAIR phantom series off-centre on its grid (the sphere is not symmetric
    about the grid's centre), slice order as acquired."""
    series = phantom_series(
        "t2_flair_tra",
        shape=FLAIR_SHAPE,
        spacing=(2.0, 2.0, 3.0),
        origin=(-8.0, -18.0, 3.0),
        intensity=1200.0,
        study_uid=STUDY_UID,
    )
    return [stored_instance(ds) for ds in series]


def brats_labels(series: Sequence[pydicom.Dataset]) -> npt.NDArray[np.uint8]:
    """An asymmetric label map in ``series_volume`` voxel order: the bright sphere is ED (2),
    its part in the first 6 columns NCR (1), its part above z = 12 mm ET (3)."""
    volume = series_volume(series)
    tumour = volume.data > TUMOUR_THRESHOLD
    labels = np.where(tumour, 2, 0).astype(np.uint8)
    labels[:6][tumour[:6]] = 1
    slice_z = np.array([(volume.affine @ [0, 0, k, 1])[2] for k in range(tumour.shape[2])])
    above = np.broadcast_to(slice_z > 12.0, tumour.shape)
    labels[tumour & above] = 3
    return labels


def expected_frame(ds: pydicom.Dataset) -> npt.NDArray[np.uint8]:
    """The label frame of one source instance, computed from its own pixels and position
    (independent of the builder's slice ordering)."""
    pixels = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    tumour = pixels > TUMOUR_THRESHOLD
    frame = np.where(tumour, 2, 0).astype(np.uint8)
    frame[:, :6][tumour[:, :6]] = 1
    if float(ds.ImagePositionPatient[2]) > 12.0:
        frame[tumour] = 3
    return frame


def brats_result(
    series: Sequence[pydicom.Dataset] | None = None,
    labels: npt.NDArray[np.uint8] | None = None,
    **overrides: object,
) -> BratsResult:
    series = list(series) if series is not None else flair_series()
    values: dict[str, object] = {
        "source_images": series,
        "labels": brats_labels(series) if labels is None else labels,
        "region_ml": {"enhancing_tumour": 1.25, "tumour_core": 2.5, "whole_tumour": 7.125},
        "mask_source": "ai",
        "algorithm": algorithm("brats", synthetic=True),
        "verifier": VERIFIER,
        "note": "Volumes reviewed.",
        "seg_series_uid": "2.25.3000000000000000000000000000001",
        "seg_sop_uid": "2.25.3000000000000000000000000000002",
        "sr_series_uid": "2.25.3000000000000000000000000000003",
        "sr_sop_uid": "2.25.3000000000000000000000000000004",
    }
    values.update(overrides)
    return BratsResult(**values)  # type: ignore[arg-type]


def write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def encoded(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dciodvfy_lines(path: Path) -> list[str]:
    """dicom3tools' dciodvfy output for ``path`` (skips the test when it is not installed)."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    return (run.stdout + run.stderr).splitlines()


def dsrdump(path: Path) -> subprocess.CompletedProcess[str]:
    """DCMTK's dsrdump of ``path`` (skips the test when it is not installed)."""
    binary = shutil.which("dsrdump")
    if binary is None:
        pytest.skip("dsrdump (Debian package dcmtk) is not installed")
    return subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
