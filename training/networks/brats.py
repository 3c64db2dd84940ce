"""BraTS brain tumour segmentation network: a residual 3D U-Net with nested-region outputs.

Input: [B, 4, D, H, W], channels in ``MRI_CHANNELS`` order (T1, T1ce, T2, FLAIR). Output:
[B, 3, D, H, W] logits, one independent sigmoid per region in ``BRATS_REGIONS`` order (ET, TC,
WT); ``training.regions.regions_to_labels`` turns thresholded regions into a label map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from monai.networks.nets.unet import UNet
from torch import nn

from medvision_contract.labels import BRATS_REGIONS, MRI_CHANNELS

BratsPresetName = Literal["default", "tiny"]

_PRESETS: dict[str, dict[str, Any]] = {
    # The clinical architecture.
    "default": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2},
    # Not the clinical architecture: same depth, few channels, for demo training on synthetic
    # data and for tests on CPU.
    "tiny": {"channels": (4, 8, 16, 32), "strides": (2, 2, 2), "num_res_units": 1},
}


def _preset_kwargs(name: str) -> dict[str, Any]:
    if name not in _PRESETS:
        raise ValueError(f"unknown BraTS preset {name!r}; choose one of {sorted(_PRESETS)}")
    return dict(_PRESETS[name])


def preset(name: BratsPresetName) -> dict[str, Any]:
    """Keyword arguments of ``build_brats_net`` for a named configuration (a fresh dict).

    ``"default"`` is the clinical architecture; ``"tiny"`` keeps the depth (so the same
    input sizes work) but is small enough to train on CPU, for demo training on synthetic
    data and tests, and is not a clinical model.
    """
    return _preset_kwargs(name)


def build_brats_net(
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 2,
    dropout: float = 0.0,
    *,
    preset: BratsPresetName | None = None,
) -> nn.Module:
    """A MONAI 3D ``UNet`` with residual units: 4 MRI channels in, 3 region logits out.

    ``preset`` (keyword only) takes ``channels``, ``strides`` and ``num_res_units`` from the
    named configuration instead; combining it with other values for those raises
    ``ValueError``. Each spatial size of the input must be divisible by the product of
    ``strides`` (8 by default); sliding-window inference uses such a patch size. The output
    has the input's spatial size and holds logits (no sigmoid) for ET, TC and WT in order.
    """
    architecture: dict[str, Any] = {
        "channels": tuple(channels),
        "strides": tuple(strides),
        "num_res_units": num_res_units,
    }
    if preset is not None:
        if architecture != _PRESETS["default"]:
            raise ValueError("pass either preset or channels/strides/num_res_units, not both")
        architecture = _preset_kwargs(preset)
    if len(architecture["strides"]) != len(architecture["channels"]) - 1:
        raise ValueError(
            f"need one stride per down-sampling step: {len(architecture['channels'])} channel "
            f"levels take {len(architecture['channels']) - 1} strides, "
            f"got {len(architecture['strides'])}"
        )
    return UNet(
        spatial_dims=3,
        in_channels=len(MRI_CHANNELS),
        out_channels=len(BRATS_REGIONS),
        dropout=dropout,
        **architecture,
    )
