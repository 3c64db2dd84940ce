"""CheXpert (v1.0 and v1.0-small) in its download layout, mapped onto ChestX-ray14 labels.

``root/`` holds ``train.csv`` and ``valid.csv`` with the columns Path, Sex, Age,
Frontal/Lateral, AP/PA and the 14 CheXpert observations. ``Path`` is written relative to
the folder above ``root`` (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``);
a path relative to ``root`` itself is accepted too. The patient id is the
``patientNNNNN`` part of the path.

Label mapping onto CXR_LABELS (the others are not observed by CheXpert: mask 0)::

    Atelectasis       <- Atelectasis
    Cardiomegaly      <- Cardiomegaly
    Effusion          <- Pleural Effusion
    Pneumonia         <- Pneumonia
    Pneumothorax      <- Pneumothorax
    Consolidation     <- Consolidation
    Edema             <- Edema

Cell values: ``1.0`` positive, ``0.0`` negative (mask 1); blank is unmentioned (mask 0);
``-1.0`` is uncertain and follows the policy: ``ones`` (U-Ones) → 1, ``zeros`` (U-Zeros)
→ 0, ``ignore`` (U-Ignore) → mask 0. No Finding, Enlarged Cardiomediastinum, Lung
Opacity, Lung Lesion, Pleural Other, Fracture and Support Devices are not used.
Sex ``Male``/``Female`` becomes ``M``/``F`` (``Unknown`` → None); CheXpert carries no race.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from medvision_contract.labels import CXR_LABELS
from training.data.errors import DatasetError
from training.data.nih import verify_image
from training.data.records import (
    CxrRecord,
    LoadReport,
    is_synthetic,
    normalise_sex,
    parse_optional_float,
    read_table,
    table_line,
)

CHEXPERT_TO_CXR: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}
REQUIRED_COLUMNS = ("Path", "Sex", "Age", *CHEXPERT_TO_CXR)
_PATIENT = re.compile(r"patient\d+")

UncertainPolicy = Literal["ones", "zeros", "ignore"]


def load_chexpert(
    root: Path,
    split: Literal["train", "valid"],
    *,
    uncertain: UncertainPolicy = "ones",
    skip_bad: bool = False,
    verify_images: bool = False,
    frontal_only: bool = False,
) -> tuple[list[CxrRecord], LoadReport]:
    """Records of ``root/{split}.csv`` in file order, and what was skipped.

    A bad row (a label cell other than 1/0/-1/blank, unparseable age, no patient id in the
    path, image absent, or with ``verify_images`` an undecodable image) raises DatasetError
    naming the CSV and line, or is skipped and counted under ``skip_bad``. A missing file or
    required column always raises. ``frontal_only`` keeps rows whose Frontal/Lateral is
    ``Frontal``.
    """
    root = Path(root)
    if split not in ("train", "valid"):
        raise ValueError(f"unknown CheXpert split {split!r}")
    if uncertain not in ("ones", "zeros", "ignore"):
        raise ValueError(f"unknown uncertainty policy {uncertain!r}")
    csv_path = root / f"{split}.csv"
    required = (*REQUIRED_COLUMNS, "Frontal/Lateral") if frontal_only else REQUIRED_COLUMNS
    table = read_table(csv_path, required)
    synthetic = is_synthetic(root)
    report = LoadReport()
    rows = [
        (position, row)
        for position, row in enumerate(table.to_dict("records"))
        if not frontal_only or row["Frontal/Lateral"].strip() == "Frontal"
    ]

    def read(numbered: tuple[int, dict[str, str]]) -> CxrRecord:
        position, row = numbered
        line = table_line(position)
        record = _parse_row(row, root, csv_path, line, uncertain, synthetic)
        if verify_images:
            verify_image(record.image_path, csv_path, line)
        return record

    return report.read_each(rows, read, skip_bad), report


def map_labels(
    row: dict[str, str], uncertain: UncertainPolicy, path: Path, line: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 [14] labels and mask of one CheXpert row under an uncertainty policy."""
    labels = np.zeros(len(CXR_LABELS), dtype=np.float32)
    mask = np.zeros(len(CXR_LABELS), dtype=np.float32)
    for column, target in CHEXPERT_TO_CXR.items():
        index = CXR_LABELS.index(target)
        value = parse_optional_float(row[column], path, line, column)
        if value is None:
            continue
        if value == 1.0:
            labels[index], mask[index] = 1.0, 1.0
        elif value == 0.0:
            mask[index] = 1.0
        elif value == -1.0:
            if uncertain != "ignore":
                labels[index] = 1.0 if uncertain == "ones" else 0.0
                mask[index] = 1.0
        else:
            reason = f"column {column!r}: expected 1, 0, -1 or blank, got {value}"
            raise DatasetError(path, reason, line)
    return labels, mask


def resolve_image(root: Path, relative: str) -> Path | None:
    """Where a CSV ``Path`` lies: beside ``root``, inside it, or inside it minus its prefix."""
    candidate = Path(relative)
    options = [root.parent / candidate, root / candidate]
    if len(candidate.parts) > 1:
        options.append(root / Path(*candidate.parts[1:]))
    return next((option for option in options if option.is_file()), None)


def _parse_row(
    row: dict[str, str],
    root: Path,
    path: Path,
    line: int,
    uncertain: UncertainPolicy,
    synthetic: bool,
) -> CxrRecord:
    relative = row["Path"].strip()
    if not relative:
        raise DatasetError(path, "empty 'Path'", line)
    patient = _PATIENT.search(relative)
    if patient is None:
        raise DatasetError(path, f"no patientNNNNN in path {relative!r}", line)
    labels, mask = map_labels(row, uncertain, path, line)
    age = parse_optional_float(row["Age"], path, line, "Age")
    image_path = resolve_image(root, relative)
    if image_path is None:
        raise DatasetError(path, f"image {relative!r} listed but not found", line)
    return CxrRecord(
        image_path=image_path,
        image_id=relative,
        patient_id=patient.group(0),
        labels=labels,
        mask=mask,
        age=age,
        sex=normalise_sex(row["Sex"]),
        race=None,
        synthetic=synthetic,
    )
