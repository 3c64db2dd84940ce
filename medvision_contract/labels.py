"""Label sets and demographic bands: one definition per concept for every MedVision part."""

from __future__ import annotations

import math

# ChestX-ray14 order: the contract with export and the control plane (ARCHITECTURE.md).
CXR_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

# Nested BraTS regions, network output channel order.
BRATS_REGIONS: tuple[str, ...] = ("ET", "TC", "WT")
# BraTS label map values.
BRATS_LABELS: dict[int, str] = {0: "background", 1: "NCR", 2: "ED", 3: "ET"}
# MRI channel order of every 4-channel volume.
MRI_CHANNELS: tuple[str, ...] = ("T1", "T1ce", "T2", "FLAIR")

# RSNA Intracranial Hemorrhage Detection (2019) labels, in the ct_head tensor order
# (ARCHITECTURE.md): "any" first, then the five subtypes alphabetically as RSNA lists them.
CT_HEAD_LABELS: tuple[str, ...] = (
    "any",
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
)
# The RSNA challenge's weighted multi-label log loss counts "any" twice.
CT_HEAD_LOSS_WEIGHTS: tuple[float, ...] = (2.0, 1.0, 1.0, 1.0, 1.0, 1.0)

AGE_BANDS: tuple[str, ...] = ("0-20", "20-40", "40-60", "60-80", "80+")


def age_band(age_years: float | None) -> str | None:
    """The band ("0-20", ..., "80+") an age in years falls in; None when unknown."""
    if age_years is None or math.isnan(age_years) or age_years < 0:
        return None
    index = min(int(age_years // 20), len(AGE_BANDS) - 1)
    return AGE_BANDS[index]
