"""RSNA Intracranial Hemorrhage Detection (2019) in its download layout.

``root/`` holds ``stage_2_train.csv`` (``ID,Label`` with six rows per slice,
``ID_<sop>_<subtype>`` for ``any`` and the five subtypes) and ``stage_2_train/ID_<sop>.dcm``,
one CT slice per SOP. Slices are grouped into series by SeriesInstanceUID and ordered by
their position along the slice normal (ImagePositionPatient projected on the cross product
of ImageOrientationPatient's row and column directions), never by file name or
InstanceNumber. Synthetic datasets (``medvision data synth ct``) add
``synthetic_lesions.csv`` (``ID,Subtype,x,y,w,h``), the planted lesion boxes used for the
localisation figures.

A bad row (malformed ID, unknown subtype, label not 0/1, conflicting duplicate), a slice
missing some of its six labels, or a bad DICOM file (absent, unreadable, no geometry, a
series with mixed orientation or duplicate positions) raises DatasetError naming the file
and row, or under ``skip_bad`` skips the slice (or series) and counts it in the report.
There is no official split: studies are split by PatientID, deterministically from ``seed``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from medvision_contract.labels import CT_HEAD_LABELS
from medvision_contract.preprocess import apply_modality_lut
from training.data.errors import DatasetError
from training.data.records import (
    Box,
    LoadReport,
    is_synthetic,
    normalise_sex,
    read_table,
    table_line,
)

LABELS_CSV = "stage_2_train.csv"
IMAGES_DIR = "stage_2_train"
LESIONS_CSV = "synthetic_lesions.csv"
_ID = re.compile(r"^(ID_[0-9A-Za-z]+)_([a-z]+)$")
_AGE = re.compile(r"^(\d{1,3})([YMWD])$")
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}

Split = Literal["train", "val", "test", "all"]


@dataclass(frozen=True)
class CtSliceRecord:
    """One slice: its file, position along the normal (mm), labels [6] in CT_HEAD_LABELS
    order and the planted lesion boxes (synthetic data; pixel coordinates, label index)."""

    sop_id: str
    path: Path
    position_mm: float
    labels: np.ndarray
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class CtSeriesRecord:
    """One axial head CT series, slices in position order, with demographics."""

    study_uid: str
    series_uid: str
    patient_id: str
    slices: tuple[CtSliceRecord, ...]
    spacing_mm: tuple[float, float, float]
    age: float | None = None
    sex: str | None = None
    synthetic: bool = False

    @property
    def slice_labels(self) -> np.ndarray:
        """[S, 6] float32 slice labels in position order."""
        return np.stack([s.labels for s in self.slices]).astype(np.float32)

    @property
    def study_labels(self) -> np.ndarray:
        """[6] float32: a label is positive for the study when any slice has it."""
        return self.slice_labels.max(axis=0)


def load_rsna_ich(
    root: Path,
    split: Split,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[list[CtSeriesRecord], LoadReport]:
    """Series of one split (sorted by StudyInstanceUID) and what was skipped.

    ``test`` holds ``ceil(test_fraction * patients)`` patients drawn by ``seed``, ``val``
    the next ``ceil(val_fraction * patients)``, ``train`` the rest, ``all`` everything.
    """
    root = Path(root)
    if split not in ("train", "val", "test", "all"):
        raise ValueError(f"unknown RSNA split {split!r}")
    report = LoadReport()
    labels = _read_labels(root / LABELS_CSV, skip_bad, report)
    boxes = _read_boxes(root / LESIONS_CSV, skip_bad, report)
    headers: dict[str, list[tuple[CtSliceRecord, pydicom.Dataset]]] = defaultdict(list)
    for sop, values in labels.items():
        path = root / IMAGES_DIR / f"{sop}.dcm"
        try:
            ds = _read_header(path)
        except DatasetError as error:
            report.skip_or_raise(error, skip_bad)
            continue
        record = CtSliceRecord(sop, path, 0.0, values, boxes.get(sop, ()))
        headers[str(ds.SeriesInstanceUID)].append((record, ds))
    synthetic = is_synthetic(root)
    series: list[CtSeriesRecord] = []
    for series_uid, members in headers.items():
        try:
            series.append(_assemble(series_uid, members, synthetic))
        except DatasetError as error:
            report.skip_or_raise(error, skip_bad)
    chosen = _split_patients(
        sorted({s.patient_id for s in series}), val_fraction, test_fraction, seed
    )
    return sorted(
        (s for s in series if split == "all" or chosen[s.patient_id] == split),
        key=lambda s: s.study_uid,
    ), report


def _split_patients(
    patients: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test = math.ceil(test_fraction * len(patients))
    n_val = math.ceil(val_fraction * len(patients))
    split = {}
    for rank, index in enumerate(order):
        split[patients[index]] = (
            "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        )
    return split


def _read_labels(path: Path, skip_bad: bool, report: LoadReport) -> dict[str, np.ndarray]:
    """Per-SOP label vectors [6]; a SOP lacking one of its six rows is skipped or raises."""
    table = read_table(path, ("ID", "Label"))
    values: dict[str, dict[str, int]] = defaultdict(dict)
    first_row: dict[str, int] = {}
    for position, (identifier, label) in enumerate(zip(table["ID"], table["Label"], strict=True)):
        line = table_line(position)
        try:
            match = _ID.match(identifier.strip())
            if match is None:
                raise DatasetError(path, f"ID {identifier!r} is not ID_<sop>_<subtype>", line)
            sop, subtype = match.groups()
            if subtype not in CT_HEAD_LABELS:
                raise DatasetError(path, f"unknown subtype {subtype!r} in {identifier!r}", line)
            if label.strip() not in ("0", "1"):
                raise DatasetError(path, f"Label must be 0 or 1, got {label!r}", line)
            value = int(label.strip())
            if values[sop].get(subtype, value) != value:
                raise DatasetError(path, f"{identifier} has conflicting labels", line)
        except DatasetError as error:
            report.skip_or_raise(error, skip_bad)
            continue
        values[sop][subtype] = value
        first_row.setdefault(sop, line)
    complete: dict[str, np.ndarray] = {}
    for sop, found in values.items():
        missing = [name for name in CT_HEAD_LABELS if name not in found]
        if missing:
            error = DatasetError(path, f"{sop} lacks rows for {', '.join(missing)}", first_row[sop])
            report.skip_or_raise(error, skip_bad)
            continue
        complete[sop] = np.array([found[name] for name in CT_HEAD_LABELS], dtype=np.float32)
    return complete


def _read_boxes(path: Path, skip_bad: bool, report: LoadReport) -> dict[str, tuple[Box, ...]]:
    """Planted lesion boxes by SOP, each also counted for ``any`` (label index 0)."""
    if not path.is_file():
        return {}
    table = read_table(path, ("ID", "Subtype", "x", "y", "w", "h"))
    boxes: dict[str, list[Box]] = defaultdict(list)
    for position, row in enumerate(table.to_dict("records")):
        try:
            if row["Subtype"] not in CT_HEAD_LABELS:
                raise DatasetError(
                    path, f"unknown subtype {row['Subtype']!r}", table_line(position)
                )
            x, y, w, h = (float(row[c]) for c in ("x", "y", "w", "h"))
        except ValueError as error:
            wrapped = (
                error
                if isinstance(error, DatasetError)
                else DatasetError(path, f"bad box value: {error}", table_line(position))
            )
            report.skip_or_raise(wrapped, skip_bad)
            continue
        index = CT_HEAD_LABELS.index(row["Subtype"])
        boxes[row["ID"]] += [Box(index, x, y, w, h), Box(0, x, y, w, h)]
    return {sop: tuple(found) for sop, found in boxes.items()}


def _read_header(path: Path) -> pydicom.Dataset:
    if not path.is_file():
        raise DatasetError(path, "DICOM file not found")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as error:
        raise DatasetError(path, f"not a readable DICOM file: {error}") from None
    for keyword in (
        "SeriesInstanceUID", "StudyInstanceUID", "ImagePositionPatient",
        "ImageOrientationPatient", "PixelSpacing",
    ):  # fmt: skip
        if keyword not in ds:
            raise DatasetError(path, f"missing {keyword}")
    return ds


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    return np.cross(orientation[:3], orientation[3:])


def _assemble(
    series_uid: str,
    members: list[tuple[CtSliceRecord, pydicom.Dataset]],
    synthetic: bool,
) -> CtSeriesRecord:
    """A series in position order; mixed orientations or duplicate positions raise."""
    first = members[0][1]
    normal = _normal(first)
    placed = []
    for record, ds in members:
        if not np.allclose(_normal(ds), normal, atol=1e-3):
            raise DatasetError(record.path, f"series {series_uid}: orientation differs")
        position = float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=np.float64), normal))
        placed.append((position, record))
    placed.sort(key=lambda item: item[0])
    positions = np.array([p for p, _ in placed])
    gaps = np.diff(positions)
    if len(gaps) and gaps.min() < 1e-3:
        duplicate = placed[int(np.argmin(gaps)) + 1][1].path
        raise DatasetError(duplicate, f"series {series_uid}: two slices at one position")
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)
    slice_mm = float(np.median(gaps)) if len(gaps) else float(first.get("SliceThickness", 1.0))
    return CtSeriesRecord(
        study_uid=str(first.StudyInstanceUID),
        series_uid=series_uid,
        patient_id=str(first.get("PatientID", first.StudyInstanceUID)),
        slices=tuple(CtSliceRecord(r.sop_id, r.path, p, r.labels, r.boxes) for p, r in placed),
        spacing_mm=(slice_mm, row_mm, col_mm),
        age=_age_years(str(first.get("PatientAge", ""))),
        sex=normalise_sex(str(first.get("PatientSex", ""))),
        synthetic=synthetic,
    )


def _age_years(text: str) -> float | None:
    match = _AGE.match(text.strip())
    return float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] if match else None


def read_ct_volume(record: CtSeriesRecord) -> np.ndarray:
    """The series' Hounsfield volume [S, rows, columns] float32 (rescale applied), slices in
    position order. A slice that cannot be decoded or differs in size raises DatasetError."""
    volume = []
    for item in record.slices:
        try:
            ds = pydicom.dcmread(item.path)
            pixels = ds.pixel_array
        except (InvalidDicomError, OSError, ValueError, AttributeError) as error:
            raise DatasetError(item.path, f"cannot decode pixels: {error}") from None
        if volume and pixels.shape != volume[0].shape:
            raise DatasetError(
                item.path, f"slice size {pixels.shape} differs from {volume[0].shape}"
            )
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        volume.append(apply_modality_lut(pixels, slope, intercept))
    return np.stack(volume)
