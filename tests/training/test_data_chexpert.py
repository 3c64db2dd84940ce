"""CheXpert loader on a tiny copy of the real download layout, every uncertainty policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.chexpert import CHEXPERT_TO_CXR, load_chexpert
from training.data.datasets import CxrDataset
from training.data.errors import DatasetError
from training.labels import CXR_LABELS

HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
OBSERVATIONS = HEADER.split(",")[5:]
PREFIX = "CheXpert-v1.0-small"


def row(path: str, sex: str, age: str, view: str, values: dict[str, str]) -> str:
    cells = [values.get(name, "") for name in OBSERVATIONS]
    return ",".join([path, sex, age, view, "AP" if view == "Frontal" else "", *cells])


# Patient 1: Cardiomegaly 1, Edema -1, Pleural Effusion 0, Atelectasis blank, Lung Opacity 1.
ROWS = [
    (
        f"{PREFIX}/train/patient00001/study1/view1_frontal.jpg",
        "Female",
        "68",
        "Frontal",
        {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0", "Lung Opacity": "1.0"},
    ),
    (
        f"{PREFIX}/train/patient00002/study2/view1_lateral.jpg",
        "Male",
        "87",
        "Lateral",
        {"No Finding": "1.0", "Pneumothorax": "0.0"},
    ),
    (
        f"{PREFIX}/train/patient00003/study1/view1_frontal.jpg",
        "Unknown",
        "",
        "Frontal",
        {"Pneumonia": "-1.0", "Consolidation": "-1.0", "Support Devices": "1.0"},
    ),
]


def write_csv(root: Path, name: str, rows: list[tuple], header: str = HEADER) -> None:
    lines = [header, *(row(*r) for r in rows)]
    (root / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def chexpert(tmp_path: Path) -> Path:
    root = tmp_path / PREFIX
    for path, *_ in ROWS:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (20, 16), 128).save(target)
    write_csv(root, "train.csv", ROWS)
    write_csv(root, "valid.csv", ROWS[:1])
    return root


def index(name: str) -> int:
    return CXR_LABELS.index(name)


@pytest.mark.parametrize(
    ("policy", "edema_label", "edema_mask"), [("ones", 1, 1), ("zeros", 0, 1), ("ignore", 0, 0)]
)
def test_uncertainty_policies(
    chexpert: Path, policy: str, edema_label: int, edema_mask: int
) -> None:
    records, report = load_chexpert(chexpert, "train", uncertain=policy)
    assert report.count == 0 and len(records) == 3
    first = records[0]
    assert first.labels[index("Cardiomegaly")] == 1 and first.mask[index("Cardiomegaly")] == 1
    assert first.labels[index("Edema")] == edema_label and first.mask[index("Edema")] == edema_mask
    assert first.labels[index("Effusion")] == 0 and first.mask[index("Effusion")] == 1
    assert first.mask[index("Atelectasis")] == 0  # blank: unmentioned
    third = records[2]
    for name in ("Pneumonia", "Consolidation"):
        assert third.labels[index(name)] == edema_label and third.mask[index(name)] == edema_mask


def test_unmapped_labels_are_masked_and_vectors_are_float32(chexpert: Path) -> None:
    records, _ = load_chexpert(chexpert, "train")
    mapped = {index(name) for name in CHEXPERT_TO_CXR.values()}
    for record in records:
        assert record.labels.dtype == np.float32 and record.mask.dtype == np.float32
        assert record.labels.shape == record.mask.shape == (14,)
        for i in set(range(14)) - mapped:
            assert record.mask[i] == 0 and record.labels[i] == 0
    assert records[1].mask[index("Pneumothorax")] == 1  # an explicit 0.0 is known


def test_patient_sex_age_and_paths(chexpert: Path) -> None:
    records, _ = load_chexpert(chexpert, "train")
    assert [r.patient_id for r in records] == ["patient00001", "patient00002", "patient00003"]
    assert [r.sex for r in records] == ["F", "M", None]
    assert [r.age for r in records] == [68.0, 87.0, None]
    assert records[0].image_path.is_file() and records[0].image_id == ROWS[0][0]
    assert all(r.race is None and not r.synthetic for r in records)


def test_valid_split_frontal_only_and_dataset(chexpert: Path) -> None:
    valid, _ = load_chexpert(chexpert, "valid")
    assert len(valid) == 1
    frontal, _ = load_chexpert(chexpert, "train", frontal_only=True)
    assert [r.patient_id for r in frontal] == ["patient00001", "patient00003"]
    item = CxrDataset(frontal)[1]
    assert item["image"].shape == (1, 16, 20) and item["index"] == 1


def test_paths_relative_to_root_are_accepted(chexpert: Path) -> None:
    stripped = [(path.removeprefix(PREFIX + "/"), *rest) for path, *rest in ROWS]
    write_csv(chexpert, "train.csv", stripped)
    records, _ = load_chexpert(chexpert, "train")
    assert all(r.image_path.is_file() for r in records)


def test_missing_column_names_file_and_column(chexpert: Path) -> None:
    header = HEADER.replace(",Pleural Effusion", ",Pleural_Effusion")
    write_csv(chexpert, "train.csv", ROWS, header=header)
    with pytest.raises(
        DatasetError, match=r"train\.csv: missing required column 'Pleural Effusion'"
    ):
        load_chexpert(chexpert, "train", skip_bad=True)


def test_absent_image_raises_or_is_skipped(chexpert: Path) -> None:
    (chexpert.parent / ROWS[1][0]).unlink()
    with pytest.raises(DatasetError, match=r"train\.csv:3: image .*patient00002"):
        load_chexpert(chexpert, "train")
    records, report = load_chexpert(chexpert, "train", skip_bad=True)
    assert len(records) == 2 and report.count == 1 and "train.csv:3:" in report.skipped[0]


def test_bad_label_value_raises_or_is_skipped(chexpert: Path) -> None:
    rows = [*ROWS[:2], (*ROWS[2][:4], {"Edema": "2.0"})]
    write_csv(chexpert, "train.csv", rows)
    with pytest.raises(DatasetError, match=r"train\.csv:4: column 'Edema'"):
        load_chexpert(chexpert, "train")
    records, report = load_chexpert(chexpert, "train", skip_bad=True)
    assert len(records) == 2 and report.count == 1


def test_corrupt_image_detected_with_verify(chexpert: Path) -> None:
    (chexpert.parent / ROWS[0][0]).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"train\.csv:2: corrupt image"):
        load_chexpert(chexpert, "train", verify_images=True)
    records, report = load_chexpert(chexpert, "train", verify_images=True, skip_bad=True)
    assert len(records) == 2 and report.count == 1
