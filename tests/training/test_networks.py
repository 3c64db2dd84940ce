"""CXR classifier (shapes, CAMs, ONNX export) and BraTS U-Net construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.blocks.convolutions import ResidualUnit
from monai.networks.nets.unet import UNet
from torch import nn

from training.labels import BRATS_REGIONS, CXR_LABELS, MRI_CHANNELS
from training.networks import brats, cxr
from training.networks.cxr import (
    CamWrapper,
    Cbam,
    CxrNet,
    build_cxr_net,
    feature_map_size,
    feature_stride_for,
)


@pytest.fixture(scope="module")
def tiny_net() -> CxrNet:
    torch.manual_seed(0)
    return build_cxr_net("tiny").eval()


@pytest.mark.parametrize("size", [(224, 224), (200, 150), (125, 97)])
def test_tiny_shapes_and_cam_mean_equals_logits(tiny_net: CxrNet, size: tuple[int, int]) -> None:
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        logits = tiny_net(x)
        cam_logits, cams = tiny_net.forward_with_cam(x)
    assert logits.shape == (2, len(CXR_LABELS))
    assert cams.shape == (2, len(CXR_LABELS), *feature_map_size(*size))
    torch.testing.assert_close(cam_logits, logits)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(224, 224), (200, 150)])
def test_cam_size_is_input_over_stride(tiny_net: CxrNet, size: tuple[int, int]) -> None:
    assert tiny_net.feature_stride == 32
    with torch.no_grad():
        _, cams = tiny_net.forward_with_cam(torch.randn(1, 1, *size))
    assert cams.shape[-2:] == (size[0] // 32, size[1] // 32)


def test_feature_map_size_rounds_like_the_network() -> None:
    assert feature_map_size(125, 127) == (4, 4)
    assert feature_stride_for((1, 1, 1, 1)) == 32
    assert feature_stride_for((1, 1, 1)) == 16


def test_default_preset_is_densenet121() -> None:
    assert cxr.preset("densenet121")["block_config"] == (6, 12, 24, 16)
    net = build_cxr_net()
    dense_layers = [
        len(list(net.features.get_submodule(f"denseblock{i}").children())) for i in range(1, 5)
    ]
    assert dense_layers == [6, 12, 24, 16]
    assert net.num_features == 1024
    assert net.feature_stride == 32
    assert isinstance(net.attention, Cbam)
    parameters = sum(p.numel() for p in net.parameters())
    assert 6.5e6 < parameters < 7.5e6


def test_overrides_and_attention_none() -> None:
    net = build_cxr_net("tiny", num_labels=3, attention="none", in_channels=3).eval()
    assert isinstance(net.attention, nn.Identity)
    with torch.no_grad():
        logits, cams = net.forward_with_cam(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 3)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, atol=1e-4, rtol=0)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown CXR preset"):
        build_cxr_net("resnet50")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attention"):
        CxrNet(attention="se", init_features=8, growth_rate=4, block_config=(1, 1, 1, 1))  # type: ignore[arg-type]


def test_preset_returns_a_fresh_dict() -> None:
    cxr.preset("tiny")["growth_rate"] = 999
    assert cxr.preset("tiny")["growth_rate"] != 999


def test_cbam_keeps_the_feature_map_shape() -> None:
    x = torch.randn(2, 32, 7, 5)
    assert Cbam(32)(x).shape == x.shape


def test_tiny_net_trains_end_to_end() -> None:
    torch.manual_seed(0)
    net = build_cxr_net("tiny", dropout=0.2).train()
    logits = net(torch.randn(2, 1, 96, 96))
    logits.sum().backward()
    assert net.classifier.weight.grad is not None
    assert all(p.grad is not None for p in net.attention.parameters())


def test_cam_wrapper_onnx_export_matches_torch(tmp_path: Path, tiny_net: CxrNet) -> None:
    pytest.importorskip("onnx", reason="needs the export extra (onnx, onnxruntime)")
    ort = pytest.importorskip("onnxruntime", reason="needs the export extra (onnx, onnxruntime)")
    wrapper = CamWrapper(tiny_net).eval()
    path = tmp_path / "cxr_cam.onnx"
    # The TorchScript exporter needs only onnx; the dynamo exporter (torch's default) also
    # needs onnxscript and takes ~20 s on 2 cores, too slow for this suite.
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(
            wrapper,
            (torch.randn(1, 1, 224, 224),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits", "cams"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch"},
                "cams": {0: "batch", 2: "cam_height", 3: "cam_width"},
            },
            opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 224, 224), (3, 1, 200, 150)]:
        image = torch.randn(*shape)
        with torch.no_grad():
            logits, cams = wrapper(image)
        onnx_logits, onnx_cams = session.run(None, {"image": image.numpy()})
        np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(onnx_cams, cams.numpy(), atol=1e-4)


def test_brats_tiny_output_shape() -> None:
    net = brats.build_brats_net(**brats.preset("tiny")).eval()
    with torch.no_grad():
        out = net(torch.randn(1, len(MRI_CHANNELS), 32, 32, 32))
    assert out.shape == (1, len(BRATS_REGIONS), 32, 32, 32)


def test_brats_default_is_residual_unet() -> None:
    assert brats.preset("default") == {
        "channels": (16, 32, 64, 128),
        "strides": (2, 2, 2),
        "num_res_units": 2,
    }
    net = brats.build_brats_net()
    assert isinstance(net, UNet)
    assert net.in_channels == 4
    assert net.out_channels == 3
    assert any(isinstance(m, ResidualUnit) for m in net.modules())


def test_brats_build_by_preset_name() -> None:
    by_name = brats.build_brats_net(preset="tiny")
    by_kwargs = brats.build_brats_net(**brats.preset("tiny"))
    assert {k: v.shape for k, v in by_name.state_dict().items()} == {
        k: v.shape for k, v in by_kwargs.state_dict().items()
    }
    with pytest.raises(ValueError, match="either preset"):
        brats.build_brats_net(channels=(8, 16, 32, 64), preset="tiny")


def test_brats_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="stride"):
        brats.build_brats_net(channels=(4, 8, 16), strides=(2, 2, 2))
    with pytest.raises(ValueError, match="unknown BraTS preset"):
        brats.preset("huge")  # type: ignore[arg-type]
