"""Synthetic NIH ChestX-ray14 and BraTS 2023 datasets: layout, labels, boxes, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from training.data.synth import (
    BratsSynthConfig,
    CxrSynthConfig,
    brats_affine,
    cxr_lung_mask,
    plan_cxr,
    render_cxr,
    synth_brats,
    synth_cxr,
)
from training.labels import AGE_BANDS, CXR_LABELS

DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Race/Ethnicity"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
CXR_CONFIG = CxrSynthConfig(n_images=48, size=64, weak_group=("race", "Group B"), seed=3)
BRATS_CONFIG = BratsSynthConfig(
    n_cases=4, shape=(32, 32, 24), spacing_mm=(1.0, 1.0, 1.5), weak_group=("sex", "F")
)
BRATS_SUFFIXES = ("t1n", "t1c", "t2w", "t2f", "seg")


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture(scope="module")
def cxr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cxr")
    synth_cxr(out, CXR_CONFIG)
    return out


@pytest.fixture(scope="module")
def brats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("brats")
    synth_brats(out, BRATS_CONFIG)
    return out


# --------------------------------------------------------------------------- CXR


def test_cxr_layout_and_exact_headers(cxr_dir: Path) -> None:
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt"):
        assert (cxr_dir / name).is_file()
    assert (cxr_dir / "test_list.txt").is_file()
    entry_lines = (cxr_dir / "Data_Entry_2017.csv").read_text("utf-8").splitlines()
    bbox_lines = (cxr_dir / "BBox_List_2017.csv").read_text("utf-8").splitlines()
    assert entry_lines[0] == DATA_ENTRY_HEADER
    assert bbox_lines[0] == BBOX_HEADER
    assert all(line.endswith(",,,") for line in bbox_lines)
    assert len(entry_lines) == 1 + CXR_CONFIG.n_images


def test_cxr_synthetic_marker_and_readme(cxr_dir: Path) -> None:
    assert (cxr_dir / "SYNTHETIC").is_file()
    readme = (cxr_dir / "README.txt").read_text("utf-8")
    assert "SYNTHETIC" in readme
    assert "medvision data synth cxr" in readme
    assert "NOT PATIENT DATA" in readme


def test_cxr_rows_and_images(cxr_dir: Path) -> None:
    rows = _rows(cxr_dir / "Data_Entry_2017.csv")
    for row in rows:
        name, labels, follow_up, patient, age, sex, view, width, height = row[:9]
        assert name == f"{int(patient):08d}_{int(follow_up):03d}.png"
        assert sex in ("M", "F")
        assert view in ("PA", "AP")
        assert 18 <= int(age) <= 90
        assert row[11] in ("Group A", "Group B", "Group C")
        names = labels.split("|")
        assert names == ["No Finding"] or names == [n for n in CXR_LABELS if n in names]
        with Image.open(cxr_dir / "images" / name) as image:
            image.verify()
        with Image.open(cxr_dir / "images" / name) as image:
            assert image.format == "PNG"
            assert image.mode == "L"
            assert image.size == (int(width), int(height)) == (64, 64)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[3]] = counts.get(row[3], 0) + 1
    assert len(counts) == CXR_CONFIG.n_images // 2
    assert set(counts.values()) <= {1, 2, 3}


def test_cxr_labels_match_boxes_inside_lungs(cxr_dir: Path) -> None:
    labels = {
        row[0]: set() if row[1] == "No Finding" else set(row[1].split("|"))
        for row in _rows(cxr_dir / "Data_Entry_2017.csv")
    }
    boxed: dict[str, set[str]] = {name: set() for name in labels}
    lungs = cxr_lung_mask(CXR_CONFIG.size)
    occupied: dict[str, np.ndarray] = {}
    for row in _rows(cxr_dir / "BBox_List_2017.csv"):
        name, label = row[0], row[1]
        x, y, w, h = (int(float(v)) for v in row[2:6])
        assert label not in boxed[name], "one box per positive label"
        boxed[name].add(label)
        assert min(x, y) >= 0 and min(w, h) > 0
        assert x + w <= CXR_CONFIG.size and y + h <= CXR_CONFIG.size
        assert lungs[y : y + h, x : x + w].all()
        taken = occupied.setdefault(name, np.zeros_like(lungs))
        assert not taken[y : y + h, x : x + w].any(), "opacities must not overlap"
        taken[y : y + h, x : x + w] = True
    assert boxed == labels
    assert sum(len(v) for v in labels.values()) > 0


def test_cxr_split_by_patient(cxr_dir: Path) -> None:
    train = (cxr_dir / "train_val_list.txt").read_text("utf-8").split()
    test = (cxr_dir / "test_list.txt").read_text("utf-8").split()
    assert train and test
    assert sorted(train + test) == sorted(r[0] for r in _rows(cxr_dir / "Data_Entry_2017.csv"))
    assert not {n[:8] for n in train} & {n[:8] for n in test}


def test_cxr_summary_and_age_bands(cxr_dir: Path) -> None:
    summary = json.loads((cxr_dir / "synthetic_summary.json").read_text("utf-8"))
    assert summary["synthetic"] is True
    assert summary["n_images"] == CXR_CONFIG.n_images
    assert summary["weak_group"] == ["race", "Group B"]
    assert set(summary["label_prevalence"]) == set(CXR_LABELS)
    groups = _rows(cxr_dir / "Data_Entry_2017.csv")
    weak = sorted(r[0] for r in groups if r[11] == "Group B")
    assert sorted(summary["weak_images"]) == weak
    bands = summary["groups"]["age_band"]
    assert all(bands[band] > 0 for band in AGE_BANDS[1:])


def test_cxr_weak_group_has_lower_contrast() -> None:
    config = CxrSynthConfig(n_images=60, size=64, weak_group=("sex", "F"), seed=1)
    contrast: dict[bool, list[float]] = {True: [], False: []}
    for plan in plan_cxr(config):
        assert plan.weak == (plan.sex == "F")
        with_opacity = render_cxr(plan, config.size)
        without = render_cxr(plan, config.size, with_opacities=False)
        for o in plan.opacities:
            box = (slice(o.y0, o.y0 + o.height), slice(o.x0, o.x0 + o.width))
            contrast[plan.weak].append(float(np.abs(with_opacity[box] - without[box]).mean()))
    assert contrast[True] and contrast[False]
    ratio = np.mean(contrast[True]) / np.mean(contrast[False])
    assert ratio < 0.5


def test_cxr_rendered_png_matches_plan(cxr_dir: Path) -> None:
    plan = next(p for p in plan_cxr(CXR_CONFIG) if p.opacities)
    expected = np.round(render_cxr(plan, CXR_CONFIG.size) * 255).astype(np.uint8)
    with Image.open(cxr_dir / "images" / plan.image_index) as image:
        assert np.array_equal(np.asarray(image), expected)


def test_cxr_is_deterministic(cxr_dir: Path, tmp_path: Path) -> None:
    synth_cxr(tmp_path, CXR_CONFIG)
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt"):
        assert (tmp_path / name).read_bytes() == (cxr_dir / name).read_bytes()
    for image in sorted((cxr_dir / "images").iterdir())[:10]:
        assert (tmp_path / "images" / image.name).read_bytes() == image.read_bytes()


def test_cxr_sixteen_bit(tmp_path: Path) -> None:
    synth_cxr(tmp_path, CxrSynthConfig(n_images=4, size=48, bit_depth=16))
    with Image.open(tmp_path / "images" / "00000001_000.png") as image:
        pixels = np.asarray(image)
    assert pixels.dtype == np.uint16
    assert pixels.max() > 255


@pytest.mark.parametrize(
    "config",
    [
        CxrSynthConfig(n_images=0),
        CxrSynthConfig(n_images=4, n_patients=5),
        CxrSynthConfig(n_images=4, weak_group=("height", "tall")),
        CxrSynthConfig(n_images=4, prevalence=1.5),
    ],
)
def test_cxr_rejects_bad_config(config: CxrSynthConfig, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synth_cxr(tmp_path, config)


# ------------------------------------------------------------------------- BraTS


def _load_case(case_dir: Path) -> dict[str, nib.Nifti1Image]:
    return {s: nib.load(case_dir / f"{case_dir.name}-{s}.nii.gz") for s in BRATS_SUFFIXES}


def test_brats_layout_and_participants(brats_dir: Path) -> None:
    assert (brats_dir / "SYNTHETIC").is_file()
    assert "medvision data synth brats" in (brats_dir / "README.txt").read_text("utf-8")
    lines = (brats_dir / "participants.csv").read_text("utf-8").splitlines()
    assert lines[0] == "case_id,age,sex,race"
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == [f"BraTS-GLI-{i:05d}-000" for i in range(BRATS_CONFIG.n_cases)]
    for case_id in ids:
        for suffix in BRATS_SUFFIXES:
            assert (brats_dir / case_id / f"{case_id}-{suffix}.nii.gz").is_file()


def test_brats_volumes_labels_and_nesting(brats_dir: Path) -> None:
    expected_affine = brats_affine(BRATS_CONFIG.shape, BRATS_CONFIG.spacing_mm)
    assert np.allclose(np.diag(expected_affine)[:3], BRATS_CONFIG.spacing_mm)
    for case_dir in sorted(p for p in brats_dir.iterdir() if p.is_dir()):
        images = _load_case(case_dir)
        for image in images.values():
            assert image.shape == BRATS_CONFIG.shape
            assert np.allclose(image.affine, expected_affine)
            assert np.allclose(image.header.get_zooms(), BRATS_CONFIG.spacing_mm)
        seg = np.asarray(images["seg"].dataobj)
        assert seg.dtype == np.uint8
        assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}
        et, tc, wt = seg == 3, np.isin(seg, (1, 3)), seg > 0
        assert not (et & ~tc).any() and not (tc & ~wt).any()
        brain = np.asarray(images["t1n"].dataobj) > 0
        assert not (wt & ~brain).any(), "tumour inside the brain"
        assert brain.mean() > 0.2


def test_brats_tumour_contrast(brats_dir: Path) -> None:
    participants = {r[0]: r for r in _rows(brats_dir / "participants.csv")}
    flair_gap: dict[bool, list[float]] = {True: [], False: []}
    for case_id, row in participants.items():
        images = _load_case(brats_dir / case_id)
        seg = np.asarray(images["seg"].dataobj)
        t1c = np.asarray(images["t1c"].dataobj, dtype=np.float32)
        flair = np.asarray(images["t2f"].dataobj, dtype=np.float32)
        healthy = (flair > 0) & (seg == 0)
        edema, core, rim = seg == 2, seg == 1, seg == 3
        assert flair[edema].mean() > flair[healthy].mean()
        assert t1c[rim].mean() > t1c[healthy].mean() > t1c[core].mean()
        flair_gap[row[2] == "F"].append(flair[edema].mean() - flair[healthy].mean())
    assert flair_gap[True] and flair_gap[False], "seed gives both groups"
    assert np.mean(flair_gap[True]) < 0.6 * np.mean(flair_gap[False])


def test_brats_is_deterministic(brats_dir: Path, tmp_path: Path) -> None:
    synth_brats(tmp_path, BRATS_CONFIG)
    for name in ("participants.csv", "synthetic_summary.json"):
        assert (tmp_path / name).read_bytes() == (brats_dir / name).read_bytes()
    case_id = "BraTS-GLI-00001-000"
    first, second = _load_case(brats_dir / case_id), _load_case(tmp_path / case_id)
    for suffix in BRATS_SUFFIXES:
        assert np.array_equal(np.asarray(first[suffix].dataobj), np.asarray(second[suffix].dataobj))
