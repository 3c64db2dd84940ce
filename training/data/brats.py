"""BraTS 2023 (GLI and the other sub-challenges) in its download layout.

``root/BraTS-GLI-00000-000/`` holds ``BraTS-GLI-00000-000-t1n.nii.gz`` (T1), ``-t1c``
(T1ce), ``-t2w`` (T2), ``-t2f`` (FLAIR) and ``-seg.nii.gz`` (0 background, 1 NCR, 2 ED,
3 ET). An optional ``root/participants.csv`` (or ``participants.tsv``) with a
``case_id`` column and any of ``age``, ``sex``, ``race`` supplies demographics; cases it
does not list keep them unknown.

:func:`load_brats` checks files and NIfTI headers (shape and affine agreement) eagerly;
:func:`read_brats_case` decodes the voxels and checks them (seg values).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from training.data.errors import DatasetError
from training.data.records import (
    BratsRecord,
    LoadReport,
    is_synthetic,
    normalise_sex,
    parse_optional_float,
    read_table,
    table_line,
)

CHANNEL_SUFFIXES: tuple[str, str, str, str] = ("t1n", "t1c", "t2w", "t2f")
SEG_SUFFIX = "seg"
CASE_PREFIX = "BraTS-"
AFFINE_ATOL = 1e-3
SEG_VALUES = frozenset({0, 1, 2, 3})
PARTICIPANT_FILES = (("participants.csv", ","), ("participants.tsv", "\t"))
_NIFTI_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)

Demographics = tuple[float | None, str | None, str | None]


def load_brats(
    root: Path,
    *,
    skip_bad: bool = False,
    require_seg: bool = True,
    verify: bool = False,
) -> tuple[list[BratsRecord], LoadReport]:
    """One record per ``BraTS-*`` case folder under ``root`` (sorted), and what was skipped.

    A case with a missing channel (or seg, under ``require_seg``), an unreadable NIfTI
    header, or channels whose shapes or affines disagree raises DatasetError naming the file,
    or is skipped and counted under ``skip_bad``. ``verify`` also decodes every volume with
    :func:`read_brats_case` (slow on the full dataset).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    report = LoadReport()
    demographics = _read_participants(root, skip_bad, report)
    synthetic = is_synthetic(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CASE_PREFIX))

    def read(folder: Path) -> BratsRecord:
        record = _case_record(folder, require_seg, demographics, synthetic)
        _check_headers(record)
        if verify:
            read_brats_case(record)
        return record

    return report.read_each(folders, read, skip_bad), report


def read_brats_case(
    record: BratsRecord,
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """The case's float32 [4, X, Y, Z] volume, uint8 [X, Y, Z] seg (or None) and spacing in mm.

    Raises DatasetError naming the file when a NIfTI is corrupt or not 3-D, when its shape
    or affine (atol 1e-3) differs from the T1 channel's, or when the seg holds values
    outside {0, 1, 2, 3}.
    """
    images = [_load(path) for path in record.channel_paths]
    reference = images[0]
    for path, image in zip(record.channel_paths, images, strict=True):
        _check_same_grid(path, image, record.channel_paths[0], reference)
    volume = np.stack(
        [_voxels(path, image) for path, image in zip(record.channel_paths, images, strict=True)]
    )
    spacing = tuple(float(z) for z in reference.header.get_zooms()[:3])
    if record.seg_path is None:
        return volume, None, spacing  # type: ignore[return-value]
    seg_image = _load(record.seg_path)
    _check_same_grid(record.seg_path, seg_image, record.channel_paths[0], reference)
    seg = _voxels(record.seg_path, seg_image)
    values = set(np.unique(seg).tolist())
    if not values <= SEG_VALUES:
        bad = ", ".join(f"{value:g}" for value in sorted(values - SEG_VALUES))
        raise DatasetError(record.seg_path, f"segmentation values {bad} outside {{0, 1, 2, 3}}")
    return volume, seg.astype(np.uint8), spacing  # type: ignore[return-value]


def _case_record(
    folder: Path, require_seg: bool, demographics: dict[str, Demographics], synthetic: bool
) -> BratsRecord:
    case_id = folder.name
    channels = tuple(folder / f"{case_id}-{suffix}.nii.gz" for suffix in CHANNEL_SUFFIXES)
    for path in channels:
        if not path.is_file():
            raise DatasetError(path, "missing channel file")
    seg_path: Path | None = folder / f"{case_id}-{SEG_SUFFIX}.nii.gz"
    if not seg_path.is_file():
        if require_seg:
            raise DatasetError(seg_path, "missing segmentation file")
        seg_path = None
    age, sex, race = demographics.get(case_id, (None, None, None))
    return BratsRecord(
        case_id=case_id,
        channel_paths=channels,  # type: ignore[arg-type]
        seg_path=seg_path,
        age=age,
        sex=sex,
        race=race,
        synthetic=synthetic,
    )


def _check_headers(record: BratsRecord) -> None:
    paths = [*record.channel_paths, *([record.seg_path] if record.seg_path else [])]
    reference = _load(paths[0])
    for path in paths:
        _check_same_grid(path, _load(path), paths[0], reference)


def _load(path: Path) -> nib.Nifti1Image:
    try:
        image = nib.load(path)
    except _NIFTI_ERRORS as exc:
        raise DatasetError(path, f"corrupt NIfTI: {exc}") from exc
    if len(image.shape) != 3:
        raise DatasetError(path, f"expected a 3-D volume, got shape {image.shape}")
    return image


def _voxels(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    try:
        return np.asarray(image.get_fdata(dtype=np.float32))
    except _NIFTI_ERRORS as exc:
        raise DatasetError(path, f"corrupt NIfTI data: {exc}") from exc


def _check_same_grid(
    path: Path, image: nib.Nifti1Image, reference_path: Path, reference: nib.Nifti1Image
) -> None:
    if image.shape != reference.shape:
        raise DatasetError(
            path, f"shape {image.shape} differs from {reference_path.name} {reference.shape}"
        )
    if not np.allclose(image.affine, reference.affine, atol=AFFINE_ATOL):
        raise DatasetError(path, f"affine differs from {reference_path.name}")


def _read_participants(root: Path, skip_bad: bool, report: LoadReport) -> dict[str, Demographics]:
    found = [(root / name, sep) for name, sep in PARTICIPANT_FILES if (root / name).is_file()]
    if not found:
        return {}
    path, sep = found[0]
    table = read_table(path, ("case_id",), sep=sep)
    table.columns = [column.lower() for column in table.columns]
    demographics: dict[str, Demographics] = {}
    for position, row in enumerate(table.to_dict("records")):
        line = table_line(position)
        try:
            age = parse_optional_float(row.get("age", ""), path, line, "age")
        except DatasetError as error:
            report.skip_or_raise(error, skip_bad)
            age = None
        sex = normalise_sex(row.get("sex", ""))
        race = row.get("race", "").strip() or None
        demographics[row["case_id"].strip()] = (age, sex, race)
    return demographics
