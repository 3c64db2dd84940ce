"""Re-export of :mod:`medvision_contract.labels` for code not yet switched to the contract."""

from medvision_contract.labels import (
    AGE_BANDS,
    BRATS_LABELS,
    BRATS_REGIONS,
    CT_HEAD_LABELS,
    CXR_LABELS,
    MRI_CHANNELS,
    age_band,
)

__all__ = [
    "AGE_BANDS",
    "BRATS_LABELS",
    "BRATS_REGIONS",
    "CT_HEAD_LABELS",
    "CXR_LABELS",
    "MRI_CHANNELS",
    "age_band",
]
