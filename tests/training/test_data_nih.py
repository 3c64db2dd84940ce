"""NIH ChestX-ray14 loader on a tiny copy of the real download layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.datasets import CxrDataset, read_xray_image
from training.data.errors import DatasetError
from training.data.nih import load_nih, parse_age, split_patients
from training.data.transforms import cxr_eval_transforms
from training.labels import CXR_LABELS

# The real headers, byte for byte: bracketed names split across columns, trailing commas.
ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"

# (image, finding labels, patient, age, sex)
ENTRIES = [
    ("00000001_000.png", "Cardiomegaly", "1", "058Y", "M"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", "1", "058Y", "M"),
    ("00000002_000.png", "No Finding", "2", "081Y", "M"),
    ("00000003_000.png", "Hernia", "3", "074", "F"),
    ("00000004_000.png", "Effusion|Infiltration", "4", "045", "F"),
    ("00000005_000.png", "No Finding", "5", "030", "F"),
    ("00000006_000.png", "Pleural_Thickening", "6", "412", "M"),
    ("00000007_000.png", "Mass|Nodule", "7", "060", "M"),
    ("00000008_000.png", "Pneumothorax", "8", "022", "F"),
    ("00000009_000.png", "Atelectasis", "9", "051", "M"),
]
TEST_IMAGES = ["00000009_000.png"]


def write_entry_csv(root: Path, rows: list[tuple[str, ...]], header: str = ENTRY_HEADER) -> None:
    lines = [header]
    for name, findings, patient, age, sex in rows:
        lines.append(f"{name},{findings},0,{patient},{age},{sex},PA,2500,2048,0.143,0.143,")
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")


def make_nih(root: Path, entries: list[tuple[str, ...]] = ENTRIES) -> Path:
    """A miniature NIH download: PNGs split over images_001/ and images_002/."""
    for index, (name, *_) in enumerate(entries):
        folder = root / f"images_00{1 + index % 2}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (np.arange(12 * 16).reshape(12, 16) + index) % 256
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / name)
    write_entry_csv(root, entries)
    names = [e[0] for e in entries]
    (root / "train_val_list.txt").write_text(
        "\n".join(n for n in names if n not in TEST_IMAGES) + "\n"
    )
    (root / "test_list.txt").write_text("\n".join(TEST_IMAGES) + "\n")
    (root / "BBox_List_2017.csv").write_text(
        BBOX_HEADER + "\n"
        "00000004_000.png,Effusion,2.5,3.0,4.0,5.5,,,\n"
        "00000004_000.png,Infiltrate,1,1,2,2,,,\n"
    )
    return root


@pytest.fixture
def nih(tmp_path: Path) -> Path:
    return make_nih(tmp_path / "nih")


def test_trainval_parses_labels_demographics_boxes_and_images(nih: Path) -> None:
    records, report = load_nih(nih, "trainval")
    assert report.count == 0
    assert [r.image_id for r in records] == [e[0] for e in ENTRIES if e[0] not in TEST_IMAGES]
    by_id = {r.image_id: r for r in records}
    two = by_id["00000001_001.png"]
    assert two.labels.dtype == np.float32 and two.labels.shape == (14,)
    assert {CXR_LABELS[i] for i in np.flatnonzero(two.labels)} == {"Cardiomegaly", "Emphysema"}
    assert np.all(two.mask == 1.0)
    assert two.age == 58.0 and two.sex == "M" and two.race is None and two.patient_id == "1"
    assert not by_id["00000002_000.png"].labels.any()
    assert by_id["00000003_000.png"].age == 74.0
    assert by_id["00000006_000.png"].age is None  # 412 years: a known entry error
    assert two.image_path.parent.parent.name == "images_002"
    boxes = by_id["00000004_000.png"].boxes
    assert [(CXR_LABELS[b.label], b.x, b.y, b.w, b.h) for b in boxes] == [
        ("Effusion", 2.5, 3.0, 4.0, 5.5),
        ("Infiltration", 1.0, 1.0, 2.0, 2.0),
    ]
    assert not any(r.synthetic for r in records)


def test_test_split_reads_test_list(nih: Path) -> None:
    records, _ = load_nih(nih, "test")
    assert [r.image_id for r in records] == TEST_IMAGES


def test_validation_is_split_by_patient_deterministically(nih: Path) -> None:
    train, _ = load_nih(nih, "train", val_fraction=0.3, seed=3)
    val, _ = load_nih(nih, "val", val_fraction=0.3, seed=3)
    trainval, _ = load_nih(nih, "trainval")
    assert {r.patient_id for r in train}.isdisjoint({r.patient_id for r in val})
    assert sorted(r.image_id for r in train + val) == sorted(r.image_id for r in trainval)
    assert len({r.patient_id for r in val}) == 3  # ceil(0.3 * 8 patients)
    again, _ = load_nih(nih, "val", val_fraction=0.3, seed=3)
    assert [r.image_id for r in again] == [r.image_id for r in val]
    draws = {frozenset(split_patients([str(p) for p in range(50)], 0.2, s)) for s in range(5)}
    assert len(draws) > 1


def test_patient_with_two_images_stays_together(nih: Path) -> None:
    for seed in range(6):
        val, _ = load_nih(nih, "val", val_fraction=0.5, seed=seed)
        ids = {r.image_id for r in val}
        assert ("00000001_000.png" in ids) == ("00000001_001.png" in ids)


@pytest.mark.parametrize("column", ["Image Index", "Finding Labels", "Patient ID", "Patient Age"])
def test_missing_column_names_file_and_column(nih: Path, column: str) -> None:
    header = ",".join(c for c in ENTRY_HEADER.split(",") if c != column)
    (nih / "Data_Entry_2017.csv").write_text(header + "\n")
    with pytest.raises(
        DatasetError, match=rf"Data_Entry_2017\.csv: missing required column '{column}'"
    ):
        load_nih(nih, "trainval", skip_bad=True)


def test_listed_but_absent_image_raises_or_is_skipped(nih: Path) -> None:
    next(nih.glob("images_*/images/00000003_000.png")).unlink()
    with pytest.raises(DatasetError) as caught:
        load_nih(nih, "trainval")
    assert "Data_Entry_2017.csv:5:" in str(caught.value)  # header line 1, 4th data row
    assert caught.value.row == 5 and "00000003_000.png" in caught.value.reason
    records, report = load_nih(nih, "trainval", skip_bad=True)
    assert report.count == 1 and "Data_Entry_2017.csv:5:" in report.skipped[0]
    assert "00000003_000.png" not in {r.image_id for r in records}


def test_unknown_label_raises_or_is_skipped(nih: Path) -> None:
    rows = [("00000001_000.png", "Cardiomegaly|Pneumonitis", "1", "58", "M"), *ENTRIES[1:]]
    write_entry_csv(nih, rows)
    with pytest.raises(
        DatasetError, match=r"Data_Entry_2017\.csv:2: unknown finding label 'Pneumonitis'"
    ):
        load_nih(nih, "trainval")
    records, report = load_nih(nih, "trainval", skip_bad=True)
    assert report.count == 1 and len(records) == len(ENTRIES) - 2


def test_corrupt_png_detected_eagerly_and_lazily(nih: Path) -> None:
    bad = next(nih.glob("images_*/images/00000002_000.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    records, report = load_nih(nih, "trainval")  # lazy by default
    dataset = CxrDataset(records)
    index = [r.image_id for r in records].index("00000002_000.png")
    with pytest.raises(DatasetError, match=r"00000002_000\.png"):
        dataset[index]
    with pytest.raises(DatasetError, match=r"Data_Entry_2017\.csv:4: corrupt image .*00000002_000"):
        load_nih(nih, "trainval", verify_images=True)
    records, report = load_nih(nih, "trainval", verify_images=True, skip_bad=True)
    assert report.count == 1 and len(records) == len(ENTRIES) - 2


def test_list_entry_missing_from_csv(nih: Path) -> None:
    with (nih / "test_list.txt").open("a") as handle:
        handle.write("99999999_000.png\n")
    with pytest.raises(DatasetError, match=r"test_list\.txt:2: '99999999_000\.png'"):
        load_nih(nih, "test")
    records, report = load_nih(nih, "test", skip_bad=True)
    assert len(records) == 1 and report.count == 1


def test_synthetic_marker_and_race_column(tmp_path: Path) -> None:
    root = make_nih(tmp_path / "synth")
    (root / "SYNTHETIC").write_text("generated\n")
    text = (root / "Data_Entry_2017.csv").read_text().splitlines()
    rows = [text[0] + "Race/Ethnicity"] + [line + "Asian" for line in text[1:]]
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    records, _ = load_nih(root, "trainval")
    assert all(r.synthetic and r.race == "Asian" for r in records)


def test_images_folder_layout_and_bit_depths(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    (root / "images").mkdir(parents=True)
    entries = ENTRIES[:3]
    write_entry_csv(root, entries)
    (root / "train_val_list.txt").write_text("\n".join(e[0] for e in entries))
    wide = np.full((6, 10), 65535, dtype=np.uint16)
    wide[:, :5] = 0
    Image.fromarray(wide).save(root / "images" / entries[0][0])
    Image.new("RGBA", (10, 6), (255, 255, 255, 255)).save(root / "images" / entries[1][0])
    Image.new("L", (10, 6), 51).save(root / "images" / entries[2][0])
    records, _ = load_nih(root, "trainval")
    sixteen, rgba, grey = (read_xray_image(r.image_path) for r in records)
    assert sixteen.dtype == np.float32 and sixteen.min() == 0.0 and sixteen.max() == 1.0
    assert np.allclose(rgba, 1.0) and np.allclose(grey, 0.2)
    item = CxrDataset(records, cxr_eval_transforms(8, 0.5, 0.25))[0]
    assert item["image"].shape == (1, 8, 8) and item["image"].dtype.is_floating_point
    assert item["labels"].shape == (14,) and item["mask"].shape == (14,) and item["index"] == 0


@pytest.mark.parametrize(
    ("text", "years"), [("058Y", 58.0), ("58", 58.0), ("006M", 0.5), ("", None), ("150", None)]
)
def test_parse_age(text: str, years: float | None) -> None:
    assert parse_age(text, Path("x.csv"), 2) == years


def test_parse_age_rejects_garbage() -> None:
    with pytest.raises(DatasetError, match=r"x\.csv:7: unparseable"):
        parse_age("old", Path("x.csv"), 7)
