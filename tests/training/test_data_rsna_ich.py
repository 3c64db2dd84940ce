"""``medvision data synth ct`` layout and the RSNA Intracranial Hemorrhage loader."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medvision_contract.labels import CT_HEAD_LABELS
from training.data.datasets import CtSliceDataset
from training.data.errors import DatasetError
from training.data.rsna_ich import load_rsna_ich, read_ct_volume
from training.data.synth_ct import SUBTYPES, CtSynthConfig, render_ct_study, synth_ct

CONFIG = CtSynthConfig(n_studies=6, size=48, min_slices=6, max_slices=8, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ct") / "rsna"
    synth_ct(root, CONFIG)
    return root


def copy(dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "copy"))


def rows(path: Path) -> list[list[str]]:
    with path.open() as handle:
        return list(csv.reader(handle))


def test_synth_writes_the_rsna_layout_marked_synthetic(dataset: Path) -> None:
    table = rows(dataset / "stage_2_train.csv")
    assert table[0] == ["ID", "Label"]
    sops = {row[0].rsplit("_", 1)[0] for row in table[1:]}
    assert len(table) - 1 == 6 * len(sops)
    assert {row[0].rsplit("_", 1)[1] for row in table[1:]} == set(CT_HEAD_LABELS)
    assert {p.stem for p in (dataset / "stage_2_train").glob("*.dcm")} == sops
    assert (dataset / "SYNTHETIC").is_file()
    ds = pydicom.dcmread(next((dataset / "stage_2_train").glob("*.dcm")))
    assert ds.Modality == "CT" and ds.BodyPartExamined == "HEAD"
    assert "SYNTHETIC" in str(ds.PatientName) and "SYNTHETIC" in ds.ImageComments
    assert (ds.Rows, ds.Columns) == (48, 48)
    assert ds.RescaleIntercept == -1024 and ds.PatientSex in ("M", "F")
    assert len(ds.ImagePositionPatient) == 3 and len(ds.ImageOrientationPatient) == 6


def test_synth_is_deterministic(dataset: Path, tmp_path: Path) -> None:
    synth_ct(tmp_path / "again", CONFIG)
    again = (tmp_path / "again" / "stage_2_train.csv").read_text()
    assert again == (dataset / "stage_2_train.csv").read_text()


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_planted_lesions_are_hyperdense_and_where_their_subtype_lies(subtype: str) -> None:
    volume, masks = render_ct_study(np.random.default_rng(0), CtSynthConfig(), (subtype,), 1.0)
    k = SUBTYPES.index(subtype)
    lesion = masks[:, k]
    assert lesion.any() and not np.delete(masks, k, axis=1).any()
    assert 60 < volume[lesion].mean() < 85  # fresh blood
    brain = (volume > 0) & (volume < 50)
    assert volume[lesion].mean() > volume[brain & ~lesion].mean() + 25


def test_loader_assembles_series_by_position_with_labels_and_boxes(dataset: Path) -> None:
    series, report = load_rsna_ich(dataset, "all")
    assert report.count == 0 and len(series) == CONFIG.n_studies
    for record in series:
        positions = [s.position_mm for s in record.slices]
        assert positions == sorted(positions)
        assert record.spacing_mm == (5.0, 3.5, 3.5) and record.synthetic
        assert np.array_equal(record.study_labels, record.slice_labels.max(axis=0))
        for item in record.slices:
            assert bool(item.boxes) == bool(item.labels[0])
        volume = read_ct_volume(record)
        assert volume.shape == (len(record.slices), 48, 48) and volume.min() < -900
        assert pydicom.dcmread(record.slices[0].path).InstanceNumber == 1
    splits = [load_rsna_ich(dataset, s)[0] for s in ("train", "val", "test")]
    ids = [{r.patient_id for r in split} for split in splits]
    assert sum(len(s) for s in splits) == len(series) and not (ids[0] & ids[1] or ids[1] & ids[2])


BAD_ROWS = [
    ("zz_epidural,1", "is not ID_<sop>_<subtype>"),
    ("ID_abc_haematoma,1", "unknown subtype"),
    ("{sop}_any,2", "Label must be 0 or 1"),
    ("{sop}_any,{flipped}", "conflicting labels"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS, ids=["id", "subtype", "label", "conflict"])
def test_bad_rows_raise_naming_file_and_row_or_are_skipped(
    dataset: Path, tmp_path: Path, row: str, message: str
) -> None:
    root = copy(dataset, tmp_path)
    table = rows(root / "stage_2_train.csv")
    sop, label = table[6][0].rsplit("_", 1)[0], table[6][1]
    line = row.format(sop=sop, flipped=1 - int(label))
    with (root / "stage_2_train.csv").open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetError, match=message) as error:
        load_rsna_ich(root, "all")
    assert str(error.value).startswith(f"{root / 'stage_2_train.csv'}:{len(table) + 1}:")
    series, report = load_rsna_ich(root, "all", skip_bad=True)
    assert report.count == 1 and len(series) == CONFIG.n_studies


def test_a_slice_without_all_six_labels_is_named(dataset: Path, tmp_path: Path) -> None:
    root = copy(dataset, tmp_path)
    table = rows(root / "stage_2_train.csv")
    kept = [r for r in table if r[0] != table[1][0]]
    (root / "stage_2_train.csv").write_text("\n".join(",".join(r) for r in kept) + "\n")
    with pytest.raises(DatasetError, match=f"{table[1][0].rsplit('_', 1)[0]} lacks rows for"):
        load_rsna_ich(root, "all")
    _series, report = load_rsna_ich(root, "all", skip_bad=True)
    assert report.count == 1


@pytest.mark.parametrize("damage", ["missing", "garbage", "duplicate-position"])
def test_bad_files_raise_naming_the_file_or_are_skipped(
    dataset: Path, tmp_path: Path, damage: str
) -> None:
    root = copy(dataset, tmp_path)
    sop = rows(root / "stage_2_train.csv")[1][0].rsplit("_", 1)[0]
    path = root / "stage_2_train" / f"{sop}.dcm"
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not a dicom file")
    else:
        ds = pydicom.dcmread(path)
        for other in (root / "stage_2_train").glob("*.dcm"):
            twin = pydicom.dcmread(other)
            if twin.SeriesInstanceUID == ds.SeriesInstanceUID and other != path:
                ds.ImagePositionPatient = twin.ImagePositionPatient
                break
        ds.save_as(path)
    with pytest.raises(DatasetError) as error:
        load_rsna_ich(root, "all")
    assert str(error.value).startswith(str(root / "stage_2_train"))
    series, report = load_rsna_ich(root, "all", skip_bad=True)
    assert report.count == 1
    lost = CONFIG.n_studies - 1 if damage == "duplicate-position" else CONFIG.n_studies
    assert len(series) == lost


def test_slice_dataset_items_are_windowed_neighbourhoods(dataset: Path) -> None:
    series, _ = load_rsna_ich(dataset, "all")
    items = CtSliceDataset(series[:2], size=32, context=1)
    assert len(items) == sum(len(r.slices) for r in series[:2])
    item = items[0]
    assert item["image"].shape == (9, 32, 32) and item["labels"].shape == (6,)
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    # the first slice's lower neighbour is itself (edge repeat)
    assert np.array_equal(item["image"][0:3].numpy(), item["image"][3:6].numpy())
