"""The committed repository on a real Triton server, against the in-process PyTorch pipelines.

One server for the module: the repository is copied to a temporary folder, tiny ``cxr_net``
(S = 64) and ``brats_net`` (roi 16) networks are exported to ONNX there and served through
export's onnxruntime runner, and the pre/post parameters are filled as export would
(``cam_max_side`` of ``cxr_postprocess`` set to 100, so the test sees the parameter read).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F
from google.protobuf import text_format
from monai.inferers import sliding_window_inference
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from tritonclient.grpc import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.grpc import model_config_pb2 as pb
from tritonclient.utils import InferenceServerException

from control.triton.server import TritonServer, free_triton_ports
from medvision_contract.cams import PostprocessParameters
from medvision_contract.ct_outputs import ct_head_outputs
from medvision_contract.ct_windows import ct_head_input
from medvision_contract.preprocess import brain_zscore, resize
from tests.fixtures.triton_repo import (
    CT_CONTEXT,
    CT_SIZE,
    MAX_BATCH,
    add_ct_head_net,
    copy_repository,
)
from tests.fixtures.triton_repo import network_model as _network_model
from tests.fixtures.triton_repo import set_parameters as _set_parameters
from tests.model_repository.helpers import load_model_module, reference_cam_uint8
from training.data.synth_ct import CtSynthConfig, render_ct_study
from training.networks.brats import build_brats_net
from training.networks.ct_head import build_ct_head_net
from training.networks.cxr import CamWrapper, CxrNet, build_cxr_net
from training.regions import region_volumes_ml, regions_to_labels

SIZE, MEAN, STD, ROI, SW_BATCH = 64, 0.45, 0.27, 16, 3
CAM_MAX_SIDE = 100
THRESHOLDS = [0.3 + 0.02 * k for k in range(14)]
CT_THRESHOLDS = [0.45, 0.5, 0.5, 0.5, 0.5, 0.5]
MAX_PIXELS = 1_000_000
pixels_module = load_model_module("cxr_preprocess", "cxr_pixels")


@pytest.fixture(scope="module")
def networks() -> tuple[CxrNet, torch.nn.Module]:
    torch.manual_seed(0)
    cxr = build_cxr_net("tiny").eval()
    brats = build_brats_net(preset="tiny").eval()
    with torch.no_grad():  # spread the region probabilities away from 0.5
        for parameter in brats.parameters():
            parameter.mul_(1.5)
    return cxr, brats


@pytest.fixture(scope="module")
def ct_net() -> CxrNet:
    torch.manual_seed(1)
    return build_ct_head_net("tiny", CT_CONTEXT).eval()


@pytest.fixture(scope="module")
def client(
    networks: tuple[CxrNet, torch.nn.Module],
    ct_net: CxrNet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InferenceServerClient]:
    repository = copy_repository(tmp_path_factory.mktemp("triton") / "model_repository")
    add_ct_head_net(repository, ct_net)
    _set_parameters(
        repository / "ct_head_postprocess", thresholds=",".join(map(str, CT_THRESHOLDS))
    )
    cxr, brats = networks
    cam_size = cxr.forward_with_cam(torch.zeros(1, 1, SIZE, SIZE))[1].shape[-2:]
    _network_model(
        repository,
        "cxr_net",
        CamWrapper(cxr).eval(),
        ("IMAGE", [1, SIZE, SIZE]),
        {"LOGITS": [14], "CAMS": [14, *cam_size]},
    )
    _network_model(
        repository,
        "brats_net",
        brats,
        ("PATCH", [4, ROI, ROI, ROI]),
        {"LOGITS": [3, ROI, ROI, ROI]},
    )
    _set_parameters(
        repository / "cxr_preprocess", input_size=SIZE, mean=MEAN, std=STD, max_pixels=MAX_PIXELS
    )
    _set_parameters(
        repository / "cxr_postprocess",
        input_size=SIZE,
        thresholds=",".join(map(str, THRESHOLDS)),
        cam_max_side=CAM_MAX_SIDE,
    )
    _set_parameters(repository / "brats_segment", roi=ROI, overlap=0.5, sw_batch_size=SW_BATCH)
    _set_parameters(repository / "brats_postprocess", threshold=0.5)
    oversized = repository / "brats_segment_oversized"
    shutil.copytree(repository / "brats_segment", oversized)
    _set_parameters(oversized, sw_batch_size=2 * MAX_BATCH)
    config = text_format.Parse((oversized / "config.pbtxt").read_text(), pb.ModelConfig())
    config.name = oversized.name
    (oversized / "config.pbtxt").write_text(text_format.MessageToString(config))
    ports = free_triton_ports()
    with (
        TritonServer(repository, **ports) as server,
        InferenceServerClient(server.url_grpc) as triton,
    ):
        yield triton


def _infer(
    client: InferenceServerClient, model: str, inputs: dict[str, tuple[np.ndarray, str]]
) -> dict[str, np.ndarray]:
    requests = []
    for name, (array, datatype) in inputs.items():
        tensor = InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        requests.append(tensor)
    config = client.get_model_config(model).config
    outputs = [InferRequestedOutput(output.name) for output in config.output]
    result = client.infer(model, requests, outputs=outputs)
    return {output.name: result.as_numpy(output.name) for output in config.output}


def _cxr(client: InferenceServerClient, pixels: np.ndarray, invert: bool) -> dict[str, np.ndarray]:
    return _infer(
        client,
        "cxr",
        {"PIXELS": (pixels, "UINT16"), "INVERT": (np.array([invert]), "BOOL")},
    )


def _ct_small_pixels() -> np.ndarray:
    """CT_small.dcm after the modality LUT, clipped to the uint16 range (air goes to 0)."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    values = apply_modality_lut(dataset.pixel_array, dataset)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


def _cxr_reference(
    net: CxrNet, pixels: np.ndarray, invert: bool, cam_shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The in-process pipeline: numpy preprocessing, PyTorch network, torch bicubic CAMs
    with the padding cropped, resized to ``cam_shape``."""
    image, geometry = pixels_module.preprocess_pixels(
        pixels, invert=invert, size=SIZE, mean=MEAN, std=STD
    )
    with torch.no_grad():
        logits, cams = net.forward_with_cam(torch.from_numpy(image))
        upsampled = F.interpolate(cams, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    probabilities = torch.sigmoid(logits)[0].numpy()
    scale = SIZE / max(pixels.shape)
    kept = [round(side * scale) for side in pixels.shape]
    pad = (int(geometry[3]), int(geometry[4]))
    cropped = upsampled[0].numpy()[:, pad[0] : pad[0] + kept[0], pad[1] : pad[1] + kept[1]]
    restored = np.stack([resize(m, cam_shape) for m in cropped])
    return {
        "PROBABILITIES": probabilities,
        "POSITIVE": probabilities >= np.array(THRESHOLDS, dtype=np.float32),
        "CAM": reference_cam_uint8(restored),
    }


@pytest.mark.parametrize(
    ("crop", "invert", "cam_shape"),
    [
        ((slice(None), slice(None)), False, (100, 100)),  # 128 x 128: longer side 100
        ((slice(None), slice(20, 90)), True, (100, 55)),  # 128 x 70: 70 * 100 / 128 = 54.7
    ],
    ids=["full", "portrait-inverted"],
)
def test_cxr_matches_the_pytorch_pipeline(
    client: InferenceServerClient,
    networks: tuple[CxrNet, torch.nn.Module],
    crop: tuple[slice, slice],
    invert: bool,
    cam_shape: tuple[int, int],
) -> None:
    """Probabilities, positives and the 14 CAMs on the ``cam_max_side`` grid (the image's
    aspect ratio) equal the in-process PyTorch pipeline's."""
    pixels = np.ascontiguousarray(_ct_small_pixels()[crop])
    result = _cxr(client, pixels, invert)
    expected = _cxr_reference(networks[0], pixels, invert, cam_shape)
    assert result["PROBABILITIES"].dtype == np.float32 and result["PROBABILITIES"].shape == (14,)
    np.testing.assert_allclose(result["PROBABILITIES"], expected["PROBABILITIES"], atol=1e-5)
    near = np.abs(expected["PROBABILITIES"] - np.array(THRESHOLDS)) < 1e-5
    np.testing.assert_array_equal(result["POSITIVE"][~near], expected["POSITIVE"][~near])
    assert result["CAM"].dtype == np.uint8 and result["CAM"].shape == (14, *cam_shape)
    assert np.abs(result["CAM"].astype(int) - expected["CAM"].astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("pixels", "datatype", "message"),
    [
        (np.zeros((32, 32), dtype=np.float32), "FP32", "data-type"),
        (np.zeros((1, 32, 32), dtype=np.uint16), "UINT16", "shape"),
        (np.zeros((0, 32), dtype=np.uint16), "UINT16", "empty"),
        (np.zeros((1001, 1000), dtype=np.uint16), "UINT16", "more than"),
    ],
    ids=["fp32", "rank-3", "empty", "too-large"],
)
def test_cxr_bad_input_is_an_error_and_the_model_keeps_serving(
    client: InferenceServerClient, pixels: np.ndarray, datatype: str, message: str
) -> None:
    with pytest.raises(InferenceServerException, match=message) as error:
        _infer(
            client,
            "cxr",
            {"PIXELS": (pixels, datatype), "INVERT": (np.array([False]), "BOOL")},
        )
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    good = _cxr(client, _ct_small_pixels(), False)
    assert good["CAM"].shape == (14, CAM_MAX_SIDE, CAM_MAX_SIDE)


def _brain_volume(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A 4-channel volume with a nonzero ellipsoidal "brain" and zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    brain = (grid**2).sum(axis=0) < 0.8
    volume = rng.normal(loc=[[[[100.0]]], [[[80.0]]], [[[120.0]]], [[[90.0]]]], scale=20.0)
    volume = np.broadcast_to(volume, (4, *shape)) + rng.normal(scale=15.0, size=(4, *shape))
    return np.where(brain, volume, 0.0).astype(np.float32)


def test_brats_matches_monai_sliding_window(
    client: InferenceServerClient, networks: tuple[CxrNet, torch.nn.Module]
) -> None:
    volume = _brain_volume((20, 22, 18), seed=4)
    spacing = np.array([1.0, 1.2, 0.9], dtype=np.float32)
    result = _infer(client, "brats", {"VOLUME": (volume, "FP32"), "SPACING_MM": (spacing, "FP32")})
    with torch.no_grad():
        logits = sliding_window_inference(
            torch.from_numpy(brain_zscore(volume))[None],
            (ROI, ROI, ROI),
            SW_BATCH,
            networks[1],
            overlap=0.5,
            mode="gaussian",
        )
    probabilities = torch.sigmoid(logits)[0].numpy()
    expected = regions_to_labels(probabilities, 0.5)
    labels = result["LABELS"]
    assert labels.dtype == np.uint8 and labels.shape == volume.shape[1:]
    ambiguous = (np.abs(probabilities - 0.5) < 1e-4).any(axis=0)
    assert ambiguous.mean() < 0.01
    np.testing.assert_array_equal(labels[~ambiguous], expected[~ambiguous])
    assert len(np.unique(labels)) > 1, "the test network should produce some tumour labels"
    volumes = region_volumes_ml(labels, spacing.tolist())
    np.testing.assert_allclose(
        result["REGION_ML"], [volumes[k] for k in ("ET", "TC", "WT")], rtol=1e-6
    )
    expected_volumes = region_volumes_ml(expected, spacing.tolist())
    slack = ambiguous.sum() * float(np.prod(spacing)) / 1000.0 + 1e-6
    for index, name in enumerate(("ET", "TC", "WT")):
        assert abs(result["REGION_ML"][index] - expected_volumes[name]) <= slack


def _brats_ok(client: InferenceServerClient) -> None:
    volume = _brain_volume((16, 16, 16), seed=5)
    spacing = np.ones(3, dtype=np.float32)
    good = _infer(client, "brats", {"VOLUME": (volume, "FP32"), "SPACING_MM": (spacing, "FP32")})
    assert good["LABELS"].shape == (16, 16, 16)


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (np.full((4, 16, 16, 16), np.nan, dtype=np.float32), "NaN"),
        (np.ones((3, 16, 16, 16), dtype=np.float32), "shape"),
        (np.ones((4, 0, 16, 16), dtype=np.float32), "empty"),
        (np.ones((4, 16, 16), dtype=np.float32), "shape"),
    ],
    ids=["nan", "three-channels", "empty", "rank-3"],
)
def test_brats_bad_input_is_an_error_and_the_model_keeps_serving(
    client: InferenceServerClient, volume: np.ndarray, message: str
) -> None:
    spacing = np.ones(3, dtype=np.float32)
    with pytest.raises(InferenceServerException, match=message) as error:
        _infer(client, "brats", {"VOLUME": (volume, "FP32"), "SPACING_MM": (spacing, "FP32")})
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    _brats_ok(client)


def test_brats_bad_spacing_is_an_error(client: InferenceServerClient) -> None:
    volume = _brain_volume((16, 16, 16), seed=6)
    spacing = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    with pytest.raises(InferenceServerException, match="SPACING_MM"):
        _infer(client, "brats", {"VOLUME": (volume, "FP32"), "SPACING_MM": (spacing, "FP32")})
    _brats_ok(client)


def test_network_errors_reach_the_caller_through_bls(client: InferenceServerClient) -> None:
    """Window batches above brats_net's max_batch_size fail there; the error comes back."""
    volume = brain_zscore(_brain_volume((40, 40, 40), seed=7))
    with pytest.raises(InferenceServerException, match="brats_net") as error:
        _infer(client, "brats_segment_oversized", {"VOLUME_NORM": (volume, "FP32")})
    assert error.value.status() == "StatusCode.INTERNAL"
    small = brain_zscore(_brain_volume((16, 16, 16), seed=8))
    result = _infer(client, "brats_segment_oversized", {"VOLUME_NORM": (small, "FP32")})
    assert result["PROBABILITIES"].shape == (3, 16, 16, 16)


CT_CONTRACT = {
    "inputs": {"VOLUME": ("INT16", [-1, -1, -1]), "SPACING_MM": ("FP32", [3])},
    "outputs": {
        "SLICE_PROBABILITIES": ("FP32", [-1, 6]),
        "PROBABILITIES": ("FP32", [6]),
        "POSITIVE": ("BOOL", [6]),
        "HEATMAP": ("UINT8", [-1, -1, -1]),
    },
}


def _head_ct(rows: int, columns: int) -> np.ndarray:
    """A synthetic head CT volume [S, rows, columns] in HU (int16) with a subdural bleed."""
    rng = np.random.default_rng(3)
    volume, _masks = render_ct_study(
        rng, CtSynthConfig(size=64, min_slices=6, max_slices=6), ("subdural",), 1.0
    )
    return np.rint(volume[:, :rows, :columns]).astype(np.int16)


def test_ct_head_ensemble_has_the_architecture_contract(client: InferenceServerClient) -> None:
    metadata = client.get_model_metadata("ct_head")
    found = {
        "inputs": {t.name: (t.datatype, list(t.shape)) for t in metadata.inputs},
        "outputs": {t.name: (t.datatype, list(t.shape)) for t in metadata.outputs},
    }
    assert found == CT_CONTRACT


@pytest.mark.parametrize(("rows", "columns"), [(64, 64), (40, 64)], ids=["square", "wide"])
def test_ct_head_matches_the_pytorch_pipeline(
    client: InferenceServerClient, ct_net: CxrNet, rows: int, columns: int
) -> None:
    """Triton's ct_head equals numpy preprocessing + the PyTorch network + numpy outputs."""
    volume = _head_ct(rows, columns)
    spacing = np.array([5.0, 0.45, 0.45], dtype=np.float32)
    result = _infer(
        client, "ct_head", {"VOLUME": (volume, "INT16"), "SPACING_MM": (spacing, "FP32")}
    )
    slices, geometry = ct_head_input(volume, size=CT_SIZE, context=CT_CONTEXT)
    with torch.no_grad():
        logits, cams = ct_net.forward_with_cam(torch.from_numpy(slices))
    expected = ct_head_outputs(
        logits.numpy(),
        cams.numpy(),
        geometry,
        PostprocessParameters(np.array(CT_THRESHOLDS, np.float32), CT_SIZE, 256),
    )
    n = volume.shape[0]
    assert {k: (v.dtype, v.shape) for k, v in result.items()} == {
        "SLICE_PROBABILITIES": (np.float32, (n, 6)),
        "PROBABILITIES": (np.float32, (6,)),
        "POSITIVE": (np.bool_, (6,)),
        "HEATMAP": (np.uint8, (n, round(256 * rows / columns), 256)),
    }
    np.testing.assert_allclose(
        result["SLICE_PROBABILITIES"], expected["SLICE_PROBABILITIES"], atol=1e-5
    )
    np.testing.assert_allclose(result["PROBABILITIES"], result["SLICE_PROBABILITIES"].max(axis=0))
    np.testing.assert_array_equal(result["POSITIVE"], expected["POSITIVE"])
    assert np.abs(result["HEATMAP"].astype(int) - expected["HEATMAP"].astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("volume", "spacing", "message"),
    [
        (np.zeros((32, 32), dtype=np.int16), [1.0, 1.0, 1.0], "shape"),
        (np.zeros((2, 32, 32), dtype=np.int16), [1.0, 0.0, 1.0], "SPACING_MM"),
    ],
    ids=["rank-2", "zero-spacing"],
)
def test_ct_head_bad_input_is_an_error_and_the_model_keeps_serving(
    client: InferenceServerClient, volume: np.ndarray, spacing: list[float], message: str
) -> None:
    inputs = {"VOLUME": (volume, "INT16"), "SPACING_MM": (np.array(spacing, np.float32), "FP32")}
    with pytest.raises(InferenceServerException, match=message):
        _infer(client, "ct_head", inputs)
    good = _infer(
        client,
        "ct_head",
        {"VOLUME": (_head_ct(64, 64), "INT16"), "SPACING_MM": (np.ones(3, np.float32), "FP32")},
    )
    assert good["HEATMAP"].shape == (6, 256, 256)
