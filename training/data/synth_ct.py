"""Synthetic head CT in the RSNA Intracranial Hemorrhage Detection (2019) layout.

Backend of ``medvision data synth ct --out DIR``. Layout written::

    DIR/stage_2_train.csv          ID,Label rows: ID_<sop>_<subtype>, 0/1 (six per slice)
    DIR/stage_2_train/ID_<sop>.dcm one CT slice per SOP (CT Image Storage)
    DIR/synthetic_lesions.csv      ID,Subtype,x,y,w,h: planted lesion boxes per slice
    DIR/SYNTHETIC, README.txt, synthetic_summary.json

Each study is one axial series on a skull/brain phantom in Hounsfield units: air, scalp,
a skull ring (~1000 HU), brain (~35 HU, smooth grey/white texture), lateral ventricles
(CSF, ~5 HU) on the middle slices, and noise. Haemorrhage is planted as hyperdense blood
(~70 HU, weaker in a ``weak_group``) with the shape and place typical of each subtype:
epidural — a biconvex lens against the inner table; subdural — a thin crescent along the
inner table; intraparenchymal — a blob in the parenchyma; intraventricular — blood
layering in the dependent half of the ventricles; subarachnoid — short lines running into
the sulci from the cortex. A lesion spans a few contiguous slices; a slice is positive for
a subtype when it holds at least ``min_lesion_pixels`` of it, and ``any`` when it holds any.

The DICOM files carry real geometry (ImagePositionPatient/Orientation, PixelSpacing,
SliceThickness, RescaleSlope/Intercept, Study/Series/SOP Instance UIDs) and PatientSex /
PatientAge for fairness reports; the file names are random hex (as in RSNA), so the series
must be assembled by position. Every file says SYNTHETIC (PatientName, ImageComments).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medvision_contract.labels import CT_HEAD_LABELS
from training.data.synth import (
    CXR_SEXES,
    _check_weak_group,
    _describe_weak,
    _in_weak_group,
    _write_csv,
    _write_marker_and_readme,
)

RSNA_CSV = "stage_2_train.csv"
RSNA_IMAGES = "stage_2_train"
LESIONS_CSV = "synthetic_lesions.csv"
SUBTYPES: tuple[str, ...] = CT_HEAD_LABELS[1:]
# The order RSNA's CSV lists a slice's six rows in.
RSNA_ROW_ORDER: tuple[str, ...] = (*SUBTYPES, "any")
RESCALE_INTERCEPT = -1024.0
SKULL_INNER, SKULL_OUTER, SCALP_OUTER = 0.86, 1.0, 1.06
HU_AIR, HU_SCALP, HU_BONE, HU_BRAIN, HU_CSF, HU_BLOOD = -1000.0, 20.0, 1100.0, 35.0, 5.0, 72.0


@dataclass(frozen=True)
class CtSynthConfig:
    """What :func:`synth_ct` makes: studies, matrix, slices, spacing, prevalence, seed."""

    n_studies: int = 60
    size: int = 64
    min_slices: int = 16
    max_slices: int = 24
    pixel_spacing_mm: float = 3.5
    slice_thickness_mm: float = 5.0
    positive_fraction: float = 0.6
    subtype_probability: float = 0.45
    min_lesion_pixels: int = 3
    noise_hu: float = 4.0
    weak_group: tuple[str, str] | None = None
    weak_factor: float = 0.5
    seed: int = 0


def _hex_id(rng: np.random.Generator, digits: int) -> str:
    return "ID_" + "".join(f"{int(v):x}" for v in rng.integers(0, 16, size=digits))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells))
    index = np.linspace(0, cells - 1, size)
    rows = np.array([np.interp(index, np.arange(cells), row) for row in coarse])
    return np.array([np.interp(index, np.arange(cells), col) for col in rows.T]).T


@dataclass(frozen=True)
class _Head:
    cy: float
    cx: float
    semi_y: float
    semi_x: float


def _polar(head: _Head, scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised elliptical radius (1 = outer skull) and angle of every pixel of a slice."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dy = (y - head.cy) / (head.semi_y * scale)
    dx = (x - head.cx) / (head.semi_x * scale)
    return np.hypot(dy, dx), np.arctan2(dy, dx)


def _angle_gap(angle: np.ndarray, centre: float) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (angle - centre))))


def _lesion_mask(
    subtype: str,
    radius: np.ndarray,
    angle: np.ndarray,
    ventricles: np.ndarray,
    rng_values: dict[str, float],
) -> np.ndarray:
    """Where ``subtype`` blood lies on one slice (boolean [size, size])."""
    theta = rng_values["theta"]
    brain = radius < SKULL_INNER
    if subtype == "epidural":  # biconvex lens pressed against the inner table
        gap = _angle_gap(angle, theta)
        depth = 0.16 * np.clip(1.0 - (gap / 0.55) ** 2, 0.0, None)
        return brain & (radius > SKULL_INNER - depth)
    if subtype == "subdural":  # thin crescent following the inner table over a long arc
        gap = _angle_gap(angle, theta)
        return brain & (radius > SKULL_INNER - 0.07) & (gap < 1.0)
    if subtype == "intraparenchymal":  # a blob inside the parenchyma
        r0, a0 = rng_values["blob_r"], theta
        py, px = r0 * np.sin(a0), r0 * np.cos(a0)
        qy, qx = radius * np.sin(angle), radius * np.cos(angle)
        return brain & (np.hypot(qy - py, qx - px) < rng_values["blob_size"])
    if subtype == "intraventricular":  # blood layering in the dependent (posterior) half
        return ventricles & (np.sin(angle) > -0.1)
    if subtype == "subarachnoid":  # short lines running into the sulci from the cortex
        lines = np.zeros_like(brain)
        for k in range(4):
            direction = theta + (k - 1.5) * 0.28
            lines |= (_angle_gap(angle, direction) < 0.045) & (radius > 0.58)
        return brain & lines & (radius < SKULL_INNER - 0.05)
    raise ValueError(f"unknown subtype {subtype!r}")


def render_ct_study(
    rng: np.random.Generator, config: CtSynthConfig, subtypes: tuple[str, ...], contrast: float
) -> tuple[np.ndarray, np.ndarray]:
    """A phantom HU volume [S, size, size] float32 and lesion masks [S, 5, size, size]
    (``SUBTYPES`` order) with blood planted for ``subtypes`` at ``contrast`` (0..1)."""
    size = config.size
    n_slices = int(rng.integers(config.min_slices, config.max_slices + 1))
    head = _Head(
        cy=size / 2 + rng.uniform(-2, 2),
        cx=size / 2 + rng.uniform(-2, 2),
        semi_y=size * rng.uniform(0.40, 0.44),
        semi_x=size * rng.uniform(0.33, 0.37),
    )
    texture = _smooth_noise(rng, size, 6) * 3.0
    z = (np.arange(n_slices) - 0.45 * (n_slices - 1)) / (0.62 * n_slices)
    scales = np.sqrt(np.clip(1.0 - z**2, 0.0, None)).clip(0.45, None)
    ventricle_slices = (np.arange(n_slices) >= 0.3 * n_slices) & (
        np.arange(n_slices) < 0.65 * n_slices
    )
    central = np.flatnonzero(scales > 0.8)
    spans = {}
    for subtype in subtypes:
        candidates = np.flatnonzero(ventricle_slices) if subtype == "intraventricular" else central
        length = int(rng.integers(3, 7))
        start = int(
            rng.integers(candidates[0], max(candidates[0] + 1, candidates[-1] - length + 2))
        )
        spans[subtype] = (
            range(start, start + length),
            {
                "theta": float(rng.uniform(-np.pi, np.pi)),
                "blob_r": float(rng.uniform(0.3, 0.55)),
                "blob_size": float(rng.uniform(0.12, 0.18)),
            },
        )
    volume = np.empty((n_slices, size, size), dtype=np.float32)
    masks = np.zeros((n_slices, len(SUBTYPES), size, size), dtype=bool)
    blood = HU_BRAIN + (HU_BLOOD - HU_BRAIN) * contrast
    for s in range(n_slices):
        radius, angle = _polar(head, float(scales[s]), size)
        image = np.full((size, size), HU_AIR)
        image[radius < SCALP_OUTER] = HU_SCALP
        image[radius < SKULL_OUTER] = HU_BONE
        brain = radius < SKULL_INNER
        image[brain] = HU_BRAIN + texture[brain]
        ventricles = np.zeros_like(brain)
        if ventricle_slices[s]:
            y, x = np.mgrid[0:size, 0:size]
            for side in (-1, 1):
                vy = (y - head.cy) / (0.22 * head.semi_y)
                vx = (x - head.cx - side * 0.16 * head.semi_x) / (0.07 * head.semi_x)
                ventricles |= np.hypot(vy, vx) < 1.0
            image[ventricles] = HU_CSF
        for subtype, (slices, values) in spans.items():
            if s in slices:
                mask = _lesion_mask(subtype, radius, angle, ventricles, values)
                if mask.sum() >= config.min_lesion_pixels:
                    masks[s, SUBTYPES.index(subtype)] = mask
                    image[mask] = blood + rng.normal(0.0, 2.0, int(mask.sum()))
        image += rng.normal(0.0, config.noise_hu, image.shape)
        volume[s] = image
    return volume, masks


def _dicom_slice(
    hu: np.ndarray,
    *,
    sop_uid: str,
    study: dict[str, str],
    position_z: float,
    instance: int,
    config: CtSynthConfig,
) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study["study_uid"]
    ds.SeriesInstanceUID = study["series_uid"]
    ds.PatientID = study["patient_id"]
    ds.PatientName = "SYNTHETIC^HEADCT"
    ds.PatientSex = study["sex"]
    ds.PatientAge = f"{int(study['age']):03d}Y"
    ds.Modality = "CT"
    ds.BodyPartExamined = "HEAD"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageComments = "SYNTHETIC image made by `medvision data synth ct`; not patient data"
    ds.InstanceNumber = instance
    ds.SeriesNumber = 1
    half = config.size * config.pixel_spacing_mm / 2
    ds.ImagePositionPatient = [-half, -half, round(position_z, 3)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [config.pixel_spacing_mm, config.pixel_spacing_mm]
    ds.SliceThickness = config.slice_thickness_mm
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.WindowCenter, ds.WindowWidth = 40, 80
    stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), 0, 4095).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    return ds


def synth_ct(out: Path, config: CtSynthConfig) -> dict[str, object]:
    """Write a synthetic RSNA ICH dataset under ``out`` and return its summary (also in
    ``synthetic_summary.json``). Deterministic for a given ``config``."""
    if config.n_studies < 1 or config.size < 32 or not 4 <= config.min_slices <= config.max_slices:
        raise ValueError("need n_studies >= 1, size >= 32 and 4 <= min_slices <= max_slices")
    _check_weak_group(config.weak_group, config.weak_factor)
    if config.weak_group is not None and config.weak_group[0] == "race":
        raise ValueError("the RSNA layout carries no race: weak_group must be sex or age_band")
    out = Path(out)
    images = out / RSNA_IMAGES
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 31])
    label_rows: list[list[str]] = []
    lesion_rows: list[list[str]] = []
    studies: list[dict[str, object]] = []
    ages = np.linspace(18, 90, config.n_studies)[rng.permutation(config.n_studies)]
    for index in range(config.n_studies):
        study_rng = np.random.default_rng([config.seed, index, 31])
        sex = CXR_SEXES[int(study_rng.integers(0, 2))]
        age = round(float(ages[index]))
        weak = _in_weak_group(config.weak_group, race="", sex=sex, age=age)
        subtypes: tuple[str, ...] = ()
        if study_rng.random() < config.positive_fraction:
            picked = study_rng.random(len(SUBTYPES)) < config.subtype_probability
            if not picked.any():
                picked[int(study_rng.integers(0, len(SUBTYPES)))] = True
            subtypes = tuple(s for s, p in zip(SUBTYPES, picked, strict=True) if p)
        volume, masks = render_ct_study(
            study_rng, config, subtypes, config.weak_factor if weak else 1.0
        )
        study = {
            "study_uid": generate_uid(entropy_srcs=[str(config.seed), str(index), "study"]),
            "series_uid": generate_uid(entropy_srcs=[str(config.seed), str(index), "series"]),
            "patient_id": _hex_id(study_rng, 9),
            "sex": sex,
            "age": str(age),
        }
        for s in study_rng.permutation(volume.shape[0]):
            sop = _hex_id(study_rng, 9)
            sop_uid = generate_uid(entropy_srcs=[str(config.seed), str(index), str(s), "sop"])
            ds = _dicom_slice(
                volume[s], sop_uid=sop_uid, study=study, instance=int(s) + 1, config=config,
                position_z=float(s) * config.slice_thickness_mm,
            )  # fmt: skip
            pydicom.dcmwrite(images / f"{sop}.dcm", ds, enforce_file_format=True)
            present = masks[s].reshape(len(SUBTYPES), -1).any(axis=1)
            values = dict(zip(SUBTYPES, present, strict=True)) | {"any": bool(present.any())}
            label_rows += [[f"{sop}_{name}", str(int(values[name]))] for name in RSNA_ROW_ORDER]
            for k, name in enumerate(SUBTYPES):
                if present[k]:
                    ys, xs = np.nonzero(masks[s, k])
                    box = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
                    lesion_rows.append([sop, name, *(str(int(v)) for v in box)])
        studies.append(
            {"study_uid": study["study_uid"], "slices": int(volume.shape[0]), "sex": sex,
             "age": age, "weak": weak, "subtypes": list(subtypes)}
        )  # fmt: skip
    _write_csv(out / RSNA_CSV, ("ID", "Label"), label_rows)
    _write_csv(out / LESIONS_CSV, ("ID", "Subtype", "x", "y", "w", "h"), lesion_rows)
    _write_marker_and_readme(
        out,
        "ct",
        "RSNA Intracranial Hemorrhage Detection layout (stage_2_train.csv + one DICOM per slice)",
        "a skull/brain phantom in HU with hyperdense blood planted per subtype: epidural "
        "lenses and subdural crescents against the skull, intraparenchymal blobs, "
        "intraventricular layering, subarachnoid sulcal lines",
        _describe_weak(config.weak_group, config.weak_factor),
    )
    summary: dict[str, object] = {
        "dataset": "ct",
        "synthetic": True,
        "generator": "medvision data synth ct",
        "config": asdict(config),
        "n_studies": config.n_studies,
        "n_slices": sum(int(s["slices"]) for s in studies),  # type: ignore[call-overload]
        "n_positive_studies": sum(bool(s["subtypes"]) for s in studies),
        "n_positive_slices": sum(row[1] == "1" for row in label_rows if row[0].endswith("_any")),
        "n_weak_studies": sum(bool(s["weak"]) for s in studies),
        "studies": studies,
    }
    (out / "synthetic_summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return summary
