"""BraTS 2023 loader and case reader on three 8x8x8 cases in the real folder layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from training.data.brats import load_brats, read_brats_case
from training.data.datasets import BratsDataset
from training.data.errors import DatasetError
from training.data.transforms import brats_eval_transforms, brats_train_transforms

CASES = ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000", "BraTS-GLI-00005-001"]
CHANNELS = ("t1n", "t1c", "t2w", "t2f")
AFFINE = np.diag([1.0, 1.0, 1.5, 1.0])


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(nib.Nifti1Image(data, affine), path)


def make_case(root: Path, case_id: str, seed: int) -> Path:
    folder = root / case_id
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    brain = np.zeros((8, 8, 8), dtype=bool)
    brain[1:7, 1:7, 1:7] = True
    for channel in CHANNELS:
        save(
            folder / f"{case_id}-{channel}.nii.gz",
            np.where(brain, rng.uniform(10, 500, brain.shape), 0).astype(np.float32),
        )
    seg = np.zeros((8, 8, 8), dtype=np.uint8)
    seg[2:5, 2:5, 2:5] = 2
    seg[3:5, 3:5, 3:5] = 1
    seg[3, 3, 3] = 3
    save(folder / f"{case_id}-seg.nii.gz", seg)
    return folder


@pytest.fixture
def brats(tmp_path: Path) -> Path:
    root = tmp_path / "BraTS2023-GLI"
    for seed, case_id in enumerate(CASES):
        make_case(root, case_id, seed)
    (root / "participants.csv").write_text(
        "case_id,age,sex,race\nBraTS-GLI-00000-000,61,M,White\nBraTS-GLI-00002-000,,F,\n"
    )
    return root


def test_loads_cases_with_demographics(brats: Path) -> None:
    records, report = load_brats(brats)
    assert report.count == 0 and [r.case_id for r in records] == CASES
    first = records[0]
    assert [p.name for p in first.channel_paths] == [f"{CASES[0]}-{c}.nii.gz" for c in CHANNELS]
    assert first.seg_path is not None and first.seg_path.name == f"{CASES[0]}-seg.nii.gz"
    assert (first.age, first.sex, first.race) == (61.0, "M", "White")
    assert (records[1].age, records[1].sex, records[1].race) == (None, "F", None)
    assert (records[2].age, records[2].sex) == (None, None)
    assert not first.synthetic


def test_read_case_volume_seg_and_spacing(brats: Path) -> None:
    records, _ = load_brats(brats)
    volume, seg, spacing = read_brats_case(records[0])
    assert volume.shape == (4, 8, 8, 8) and volume.dtype == np.float32
    assert seg is not None and seg.shape == (8, 8, 8) and seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert spacing == (1.0, 1.0, 1.5)


def test_missing_channel_raises_or_is_skipped(brats: Path) -> None:
    (brats / CASES[1] / f"{CASES[1]}-t2f.nii.gz").unlink()
    with pytest.raises(DatasetError, match=rf"{CASES[1]}-t2f\.nii\.gz: missing channel"):
        load_brats(brats)
    records, report = load_brats(brats, skip_bad=True)
    assert [r.case_id for r in records] == [CASES[0], CASES[2]] and report.count == 1


def test_missing_seg_is_allowed_without_require_seg(brats: Path) -> None:
    (brats / CASES[0] / f"{CASES[0]}-seg.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"-seg\.nii\.gz: missing segmentation"):
        load_brats(brats)
    records, _ = load_brats(brats, require_seg=False)
    assert records[0].seg_path is None
    volume, seg, _ = read_brats_case(records[0])
    assert seg is None and volume.shape == (4, 8, 8, 8)
    assert set(BratsDataset(records[:1])[0]) == {"image", "spacing_mm", "index"}


def test_corrupt_nifti_raises_or_is_skipped(brats: Path) -> None:
    (brats / CASES[2] / f"{CASES[2]}-t1c.nii.gz").write_bytes(b"\x1f\x8b not gzip at all")
    with pytest.raises(DatasetError, match=rf"{CASES[2]}-t1c\.nii\.gz: corrupt NIfTI"):
        load_brats(brats)
    records, report = load_brats(brats, skip_bad=True)
    assert len(records) == 2 and report.count == 1 and "t1c.nii.gz" in report.skipped[0]


def test_truncated_nifti_data_caught_when_decoding(brats: Path) -> None:
    path = brats / CASES[0] / f"{CASES[0]}-t2w.nii.gz"
    path.write_bytes(path.read_bytes()[:-40])
    records, _ = load_brats(brats)  # the header still reads
    with pytest.raises(DatasetError, match=rf"{CASES[0]}-t2w\.nii\.gz: corrupt NIfTI"):
        read_brats_case(records[0])
    records, report = load_brats(brats, verify=True, skip_bad=True)
    assert len(records) == 2 and report.count == 1


def test_channels_of_different_shapes(brats: Path) -> None:
    save(brats / CASES[0] / f"{CASES[0]}-t2w.nii.gz", np.ones((8, 8, 7), dtype=np.float32))
    with pytest.raises(DatasetError, match=rf"{CASES[0]}-t2w\.nii\.gz: shape \(8, 8, 7\) differs"):
        load_brats(brats)
    records, report = load_brats(brats, skip_bad=True)
    assert len(records) == 2 and report.count == 1


def test_channels_with_different_affines(brats: Path) -> None:
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.01
    save(brats / CASES[1] / f"{CASES[1]}-t1c.nii.gz", np.ones((8, 8, 8), dtype=np.float32), shifted)
    with pytest.raises(DatasetError, match=rf"{CASES[1]}-t1c\.nii\.gz: affine differs"):
        load_brats(brats)
    records, report = load_brats(brats, skip_bad=True)
    assert len(records) == 2 and report.count == 1


def test_affine_within_tolerance_is_accepted(brats: Path) -> None:
    close = AFFINE.copy()
    close[0, 3] = 5e-4
    save(brats / CASES[1] / f"{CASES[1]}-t1c.nii.gz", np.ones((8, 8, 8), dtype=np.float32), close)
    records, _ = load_brats(brats)
    assert len(records) == 3


def test_bad_seg_values(brats: Path) -> None:
    seg = np.zeros((8, 8, 8), dtype=np.uint8)
    seg[4, 4, 4] = 4  # the pre-2023 enhancing-tumour value
    save(brats / CASES[2] / f"{CASES[2]}-seg.nii.gz", seg)
    records, _ = load_brats(brats)
    with pytest.raises(
        DatasetError, match=rf"{CASES[2]}-seg\.nii\.gz: segmentation values 4 outside"
    ):
        read_brats_case(records[2])
    records, report = load_brats(brats, verify=True, skip_bad=True)
    assert len(records) == 2 and report.count == 1


def test_bad_participant_age_names_row(brats: Path) -> None:
    (brats / "participants.csv").write_text("case_id,age\nBraTS-GLI-00000-000,sixty\n")
    with pytest.raises(DatasetError, match=r"participants\.csv:2: column 'age'"):
        load_brats(brats)
    records, report = load_brats(brats, skip_bad=True)
    assert len(records) == 3 and records[0].age is None and report.count == 1


def test_synthetic_marker(brats: Path) -> None:
    (brats / "SYNTHETIC").touch()
    records, _ = load_brats(brats)
    assert all(r.synthetic for r in records)


def test_dataset_regions_transforms_and_cache(brats: Path) -> None:
    records, _ = load_brats(brats)
    dataset = BratsDataset(records, brats_eval_transforms(), cache=True)
    item = dataset[0]
    assert item["image"].shape == (4, 8, 8, 8) and item["label"].shape == (3, 8, 8, 8)
    et, tc, wt = item["label"]
    assert et.sum() == 1 and tc.sum() == 8 and wt.sum() == 27
    assert item["spacing_mm"].tolist() == [1.0, 1.0, 1.5] and item["index"] == 0
    assert dataset[0]["image"].equal(item["image"])  # cached copy untouched by transforms
    train = BratsDataset(records, brats_train_transforms(roi=(12, 12, 6)))
    sample = train[1]
    assert sample["image"].shape == (4, 12, 12, 6) and sample["label"].shape == (3, 12, 12, 6)
