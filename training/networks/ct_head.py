"""Head CT haemorrhage classifier: a 2-D DenseNet per slice, max over slices per study.

Each slice (its HU windows as channels, with optional 2.5-D neighbours, see
``medvision_contract.ct_windows``) goes through the same network as the chest X-ray model
(``CxrNet``: MONAI DenseNet features, CBAM, ReLU, average pool, linear), with six outputs
in ``CT_HEAD_LABELS`` order, so the per-slice class activation maps are exact in the same
way (mean of the map = logit). The study-level score of a label is the maximum of its slice
logits (:func:`study_logits`): a study has a bleed when some slice has it, and the slice
that decides is the one the heat map shows. Max pooling also keeps the served network a
per-slice model (Triton batches slices) with the aggregation in post-processing.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from medvision_contract.ct_windows import channels_per_slice
from medvision_contract.labels import CT_HEAD_LABELS
from training.networks.cxr import CxrNet
from training.networks.cxr import preset as cxr_preset

CtHeadPresetName = Literal["densenet121", "demo", "tiny"]

_PRESETS: dict[str, dict[str, Any]] = {
    # The clinical architecture: DenseNet-121 with CBAM (as the chest model), 2-D per slice.
    "densenet121": cxr_preset("densenet121"),
    # Not clinical: two dense blocks (stride 8, so a 64² slice gives an 8×8 map) that
    # trains on synthetic data on a CPU in minutes, for the demo.
    "demo": {"init_features": 16, "growth_rate": 12, "block_config": (3, 6), "attention": "cbam"},
    # Not clinical: a few thousand parameters with the same layout, for tests.
    "tiny": {"init_features": 8, "growth_rate": 8, "block_config": (2, 2), "attention": "cbam"},
}


def build_ct_head_net(
    preset: CtHeadPresetName = "densenet121", context: int = 0, **overrides: Any
) -> CxrNet:
    """A per-slice classifier for ``context`` neighbours each side ((2k + 1) * 3 input
    channels) and the six ``CT_HEAD_LABELS``, from a named preset."""
    if preset not in _PRESETS:
        raise ValueError(f"unknown ct_head preset {preset!r}; choose one of {sorted(_PRESETS)}")
    kwargs = {
        **_PRESETS[preset],
        "num_labels": len(CT_HEAD_LABELS),
        "in_channels": channels_per_slice(context),
        **overrides,
    }
    return CxrNet(**kwargs)


def study_logits(slice_logits: torch.Tensor, study_index: torch.Tensor) -> torch.Tensor:
    """Study-level logits [n_studies, L]: the maximum slice logit of each study.

    ``slice_logits`` is [N, L] and ``study_index`` [N] the study (0..n_studies-1) of each
    slice; every study must own at least one slice.
    """
    n_studies = int(study_index.max()) + 1
    out = torch.full(
        (n_studies, slice_logits.shape[1]), -torch.inf, dtype=slice_logits.dtype,
        device=slice_logits.device,
    )  # fmt: skip
    index = study_index[:, None].expand_as(slice_logits)
    return out.scatter_reduce(0, index, slice_logits, reduce="amax")
