"""NIH ChestX-ray14 in its download layout.

``root/`` holds ``Data_Entry_2017.csv`` (or the 2020 re-release with the same columns),
``BBox_List_2017.csv`` (optional), ``train_val_list.txt``, ``test_list.txt`` and the PNGs
either in ``root/images/`` or in ``root/images_001/images/`` ... (Kaggle download).

The real CSV headers split bracketed names across columns: ``OriginalImage[Width`` /
``Height]`` in the data entry file and ``Bbox [x`` / ``y`` / ``w`` / ``h]`` in the box
file; both are read as they are. Patient Age is ``58`` or the 2017 ``058Y`` spelling
(``M`` months and ``D`` days are converted); ages over 120 years are known entry errors
in the release and read as unknown. The box file's ``Infiltrate`` is ChestX-ray14's
``Infiltration``. An optional ``Race/Ethnicity`` column (synthetic data) fills ``race``.

All 14 labels are known for every image (mask = 1): "No Finding" means all negative.
Validation is split off ``train_val_list.txt`` by patient, never by image.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

from medvision_contract.labels import CXR_LABELS
from training.data.errors import DatasetError
from training.data.records import (
    Box,
    CxrRecord,
    LoadReport,
    is_synthetic,
    normalise_sex,
    read_table,
    table_line,
)

DATA_ENTRY = "Data_Entry_2017.csv"
DATA_ENTRY_2020 = "Data_Entry_2017_v2020.csv"
BBOX_LIST = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
NO_FINDING = "No Finding"
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender")
RACE_COLUMN = "Race/Ethnicity"
MAX_PLAUSIBLE_AGE = 120.0
LABEL_ALIASES = {"Infiltrate": "Infiltration", "Pleural Thickening": "Pleural_Thickening"}
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([YMD]?)$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "D": 1.0 / 365.25}

Split = Literal["train", "val", "test", "trainval"]


def load_nih(
    root: Path,
    split: Split,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    verify_images: bool = False,
) -> tuple[list[CxrRecord], LoadReport]:
    """Records of one split, in list-file order, and what was skipped.

    ``val`` holds the patients drawn (deterministically from ``seed``) for validation out
    of ``train_val_list.txt``; ``train`` the rest; ``trainval`` both; ``test`` the official
    test list. A bad row (unknown label, unparseable age, image absent, or with
    ``verify_images`` an undecodable PNG) raises DatasetError naming the file and row, or
    is skipped and counted in the report under ``skip_bad``. A missing file or required
    column always raises.
    """
    root = Path(root)
    if split not in ("train", "val", "test", "trainval"):
        raise ValueError(f"unknown NIH split {split!r}")
    entry_path = root / DATA_ENTRY
    if not entry_path.is_file() and (root / DATA_ENTRY_2020).is_file():
        entry_path = root / DATA_ENTRY_2020
    table = read_table(entry_path, REQUIRED_COLUMNS).to_dict("records")
    report = LoadReport()
    rows = _index_rows(table, entry_path, skip_bad, report)

    list_path = root / (TEST_LIST if split == "test" else TRAIN_VAL_LIST)
    names = _read_list(list_path, rows, skip_bad, report)
    if split in ("train", "val"):
        patient_of = {name: table[rows[name]]["Patient ID"].strip() for name in names}
        val_patients = split_patients(list(patient_of.values()), val_fraction, seed)
        names = [name for name in names if (patient_of[name] in val_patients) == (split == "val")]

    boxes = _read_boxes(root / BBOX_LIST, skip_bad, report)
    images = index_images(root)
    synthetic = is_synthetic(root)

    def read(name: str) -> CxrRecord:
        position = rows[name]
        record = _parse_row(table[position], entry_path, table_line(position), images)
        if verify_images:
            verify_image(record.image_path, entry_path, table_line(position))
        return _with(record, boxes.get(name, ()), synthetic)

    return report.read_each(names, read, skip_bad), report


def split_patients(patients: list[str], val_fraction: float, seed: int) -> set[str]:
    """The validation patients: ``ceil(val_fraction * n)`` drawn from ``patients`` by ``seed``.

    The draw depends only on the set of patients, the fraction and the seed.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(set(patients))
    count = math.ceil(val_fraction * len(ordered))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[i] for i in order[:count]}


def index_images(root: Path) -> dict[str, Path]:
    """Every PNG under ``root/images/`` and ``root/images_*/images/`` by file name."""
    folders = [root / "images", *sorted(root.glob("images_*/images"))]
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            found.update((path.name, path) for path in folder.iterdir() if path.suffix == ".png")
    return found


def verify_image(path: Path, table: Path, row: int) -> None:
    """Raise DatasetError (naming ``table`` and ``row``) when ``path`` is not a decodable image."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(table, f"corrupt image {path}: {exc}", row) from exc


def parse_finding_labels(text: str, path: Path, row: int) -> np.ndarray:
    """The float32 [14] multi-hot vector of a ``Finding Labels`` cell ("A|B" or "No Finding")."""
    labels = np.zeros(len(CXR_LABELS), dtype=np.float32)
    names = [name.strip() for name in text.split("|") if name.strip()]
    if not names:
        raise DatasetError(path, "empty 'Finding Labels'", row)
    for name in names:
        if name == NO_FINDING:
            if len(names) > 1:
                raise DatasetError(path, f"'No Finding' combined with labels: {text!r}", row)
            continue
        labels[label_index(name, path, row)] = 1.0
    return labels


def label_index(name: str, path: Path, row: int) -> int:
    """The CXR_LABELS index of a ChestX-ray14 finding name; DatasetError when unknown."""
    canonical = LABEL_ALIASES.get(name, name)
    if canonical not in CXR_LABELS:
        raise DatasetError(path, f"unknown finding label {name!r}", row)
    return CXR_LABELS.index(canonical)


def parse_age(text: str, path: Path, row: int) -> float | None:
    """Age in years from ``58``, ``58.0``, ``058Y``, ``011M`` or ``020D``.

    None when blank or over 120 years; DatasetError naming file and row when unparseable.
    """
    text = text.strip()
    if not text:
        return None
    match = _AGE.match(text)
    if match is None:
        raise DatasetError(path, f"unparseable 'Patient Age' {text!r}", row)
    years = float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]
    return years if years <= MAX_PLAUSIBLE_AGE else None


def _index_rows(
    table: list[dict[str, str]], path: Path, skip_bad: bool, report: LoadReport
) -> dict[str, int]:
    rows: dict[str, int] = {}
    for position, values in enumerate(table):
        name = values["Image Index"].strip()
        problem = "empty 'Image Index'" if not name else None
        if name in rows:
            problem = f"duplicate 'Image Index' {name!r} (first on line {table_line(rows[name])})"
        if problem is not None:
            error = DatasetError(path, problem, table_line(position))
            report.skip_or_raise(error, skip_bad)
            continue
        rows[name] = position
    return rows


def _read_list(path: Path, rows: dict[str, int], skip_bad: bool, report: LoadReport) -> list[str]:
    if not path.is_file():
        raise DatasetError(path, "file not found")
    names = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name not in rows:
            error = DatasetError(path, f"{name!r} is not in {DATA_ENTRY}", line_number)
            report.skip_or_raise(error, skip_bad)
            continue
        names.append(name)
    return names


def _read_boxes(path: Path, skip_bad: bool, report: LoadReport) -> dict[str, tuple[Box, ...]]:
    if not path.is_file():
        return {}
    table = read_table(path, ("Image Index", "Finding Label"))
    columns = _box_columns(table, path)
    boxes: dict[str, list[Box]] = {}
    for position, values in enumerate(table.to_dict("records")):
        line = table_line(position)
        try:
            label = label_index(values["Finding Label"].strip(), path, line)
            x, y, w, h = (_box_value(values, column, path, line) for column in columns)
        except DatasetError as error:
            report.skip_or_raise(error, skip_bad)
            continue
        boxes.setdefault(values["Image Index"].strip(), []).append(Box(label, x, y, w, h))
    return {name: tuple(found) for name, found in boxes.items()}


def _box_columns(table: pd.DataFrame, path: Path) -> tuple[str, str, str, str]:
    """The x, y, w, h columns: the real split header ``Bbox [x`` ``y`` ``w`` ``h]``."""
    by_key = {
        column.lower().replace("bbox", "").strip(" []"): column
        for column in table.columns
        if column.lower().replace("bbox", "").strip(" []") in ("x", "y", "w", "h")
    }
    for key in ("x", "y", "w", "h"):
        if key not in by_key:
            raise DatasetError(path, f"missing required column for box {key!r} ('Bbox [x,y,w,h]')")
    return by_key["x"], by_key["y"], by_key["w"], by_key["h"]


def _box_value(values: dict[str, str], column: str, path: Path, line: int) -> float:
    text = values[column].strip()
    try:
        return float(text)
    except ValueError:
        raise DatasetError(path, f"box column {column!r}: not a number: {text!r}", line) from None


def _parse_row(row: dict[str, str], path: Path, line: int, images: dict[str, Path]) -> CxrRecord:
    name = row["Image Index"].strip()
    patient = row["Patient ID"].strip()
    if not patient:
        raise DatasetError(path, "empty 'Patient ID'", line)
    labels = parse_finding_labels(row["Finding Labels"], path, line)
    age = parse_age(row["Patient Age"], path, line)
    image_path = images.get(name)
    if image_path is None:
        raise DatasetError(path, f"image {name!r} listed but not found under images/", line)
    race = row.get(RACE_COLUMN, "").strip() or None
    return CxrRecord(
        image_path=image_path,
        image_id=name,
        patient_id=patient,
        labels=labels,
        mask=np.ones(len(CXR_LABELS), dtype=np.float32),
        age=age,
        sex=normalise_sex(row["Patient Gender"]),
        race=race,
    )


def _with(record: CxrRecord, boxes: tuple[Box, ...], synthetic: bool) -> CxrRecord:
    return replace(record, boxes=boxes, synthetic=synthetic)
