"""CheXNet-style chest X-ray classifier: DenseNet features, CBAM attention, class activation maps.

The network is DenseNet-121 features (MONAI's ``DenseNet``, single-channel input), a CBAM
block on the last feature map, ReLU, global average pooling and one linear layer giving one
logit per label (sigmoid outputs, multi-label). Because the head is "average pool, then
linear", the class activation map of label k is the same linear layer applied at every
pixel of the feature map; its spatial mean is the logit (``forward_with_cam``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from monai.networks.nets.densenet import DenseNet
from torch import nn

from medvision_contract.labels import CXR_LABELS

AttentionKind = Literal["cbam", "none"]
CxrPresetName = Literal["densenet121", "demo", "tiny"]

_PRESETS: dict[str, dict[str, Any]] = {
    # The clinical architecture: DenseNet-121 (CheXNet) with CBAM before pooling.
    "densenet121": {
        "init_features": 64,
        "growth_rate": 32,
        "block_config": (6, 12, 24, 16),
        "attention": "cbam",
    },
    # Not the clinical architecture: a small DenseNet with three dense blocks (stride 16, so
    # a 128² input gives an 8×8 CAM) that trains on CPU in minutes, for the synthetic demo.
    "demo": {
        "init_features": 16,
        "growth_rate": 12,
        "block_config": (2, 4, 4),
        "attention": "cbam",
    },
    # Not the clinical architecture: ~28 thousand parameters with the same layout (four
    # dense blocks, stride 32, CBAM), for demo training on synthetic data and for tests.
    "tiny": {
        "init_features": 16,
        "growth_rate": 8,
        "block_config": (2, 2, 2, 2),
        "attention": "cbam",
    },
}


def _preset_kwargs(name: str) -> dict[str, Any]:
    if name not in _PRESETS:
        raise ValueError(f"unknown CXR preset {name!r}; choose one of {sorted(_PRESETS)}")
    return dict(_PRESETS[name])


def preset(name: CxrPresetName) -> dict[str, Any]:
    """Constructor keyword arguments of a named ``CxrNet`` configuration (a fresh dict).

    ``"densenet121"`` is the clinical architecture. ``"demo"`` (three blocks, stride 16)
    is the CPU demo model for synthetic data. ``"tiny"`` keeps the layout (four dense
    blocks, stride 32, CBAM) but is small enough to train on CPU; it exists for demo training
    on synthetic data and for tests, and is not a clinical model.
    """
    return _preset_kwargs(name)


def feature_stride_for(block_config: Sequence[int]) -> int:
    """Downsampling factor from image to feature map for a DenseNet with these blocks.

    The stem divides by 4 (stride-2 convolution, stride-2 max pool) and each transition
    between dense blocks by 2: 32 for four blocks.
    """
    return int(4 * 2 ** (len(block_config) - 1))


def feature_map_size(height: int, width: int, num_blocks: int = 4) -> tuple[int, int]:
    """Exact feature map (and CAM) size for an input of ``height`` x ``width`` pixels.

    The stem rounds up (padded stride-2 convolution and max pool) and transitions round
    down (2x2 average pool), so the size is ``ceil(n / 4) // 2 ** (num_blocks - 1)``: it
    equals ``n // 32`` for most but not all sizes (125 gives 4, not 3).
    """

    def one_axis(n: int) -> int:
        stem = -(-n // 4)
        return int(stem // 2 ** (num_blocks - 1))

    return one_axis(height), one_axis(width)


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP on the average- and max-pooled channel vectors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` [B, C, H, W] by a weight in (0, 1)."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(peak))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7x7 convolution over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each pixel of ``x`` [B, C, H, W] by a weight in (0, 1); the shape is kept."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class Cbam(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial.

    Why CBAM here: it is cheap (one small MLP and one 7x7 convolution on the 7x7 map of a
    224 input, ~1.5% of DenseNet-121's parameters) and it only rescales the feature map,
    keeping it spatial, so class activation maps are still read from the attended feature
    map with the classifier weights and stay exact (mean of the CAM = logit).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attended feature map, same shape as ``x`` [B, C, H, W]."""
        attended: torch.Tensor = self.spatial(self.channel(x))
        return attended


class CxrNet(nn.Module):
    """Multi-label chest X-ray classifier returning one logit per label.

    Input: [B, in_channels, H, W] normalised images of any size of at least 32 pixels per
    side (the feature map is ``feature_map_size(H, W)``, downsampled by ``feature_stride``).
    Defaults build DenseNet-121 with CBAM and 14 ChestX-ray14 labels (``CXR_LABELS`` order).
    """

    def __init__(
        self,
        num_labels: int = len(CXR_LABELS),
        in_channels: int = 1,
        init_features: int = 64,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        attention: AttentionKind = "cbam",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ("cbam", "none"):
            raise ValueError(f"attention must be 'cbam' or 'none', not {attention!r}")
        densenet = DenseNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_labels,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=tuple(block_config),
        )
        self.features: nn.Module = densenet.features
        self.num_features: int = cast(nn.Linear, densenet.class_layers.out).in_features
        self.num_blocks: int = len(block_config)
        self.feature_stride: int = feature_stride_for(block_config)
        self.attention: nn.Module = (
            Cbam(self.num_features) if attention == "cbam" else nn.Identity()
        )
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_labels)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attended, rectified last feature map [B, num_features, h, w] the head reads."""
        rectified: torch.Tensor = self.relu(self.attention(self.features(x)))
        return rectified

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_labels]; apply a sigmoid per label for probabilities."""
        pooled = self.feature_map(x).mean(dim=(2, 3))
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, L] and class activation maps [B, L, h, w] from one pass.

        ``cam_k = sum_c w_kc * F_c + b_k`` over the feature map F, so in eval mode the spatial
        mean of ``cam_k`` equals ``logit_k`` (dropout, active only in training, breaks that).
        Plain tensor ops only, so it exports to ONNX with dynamic batch and image size.
        """
        feature_map = self.feature_map(x)
        logits: torch.Tensor = self.classifier(self.dropout(feature_map.mean(dim=(2, 3))))
        cams = torch.einsum("bchw,lc->blhw", feature_map, self.classifier.weight)
        cams = cams + self.classifier.bias[None, :, None, None]
        return logits, cams


class CamWrapper(nn.Module):
    """Export view of a ``CxrNet``: ``forward(x)`` returns ``(logits, cams)``."""

    def __init__(self, net: CxrNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``CxrNet.forward_with_cam``."""
        return self.net.forward_with_cam(x)


def build_cxr_net(preset: CxrPresetName = "densenet121", **overrides: Any) -> CxrNet:
    """A ``CxrNet`` built from a named preset, with any constructor argument overridden."""
    return CxrNet(**{**_preset_kwargs(preset), **overrides})
