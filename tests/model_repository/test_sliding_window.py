"""The numpy sliding window of ``brats_segment`` against MONAI's, with the same network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map
from monai.inferers import sliding_window_inference as monai_sliding_window

from tests.model_repository.helpers import load_model_module
from training.networks.brats import build_brats_net

window_module = load_model_module("brats_segment", "sliding_window")


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_brats_net(preset="tiny").eval()


@pytest.mark.parametrize("roi", [(16, 16, 16), (8, 16, 24), (96, 96, 96)])
def test_importance_map_matches_monai(roi: tuple[int, int, int]) -> None:
    expected = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).numpy()
    np.testing.assert_allclose(window_module.gaussian_importance_map(roi), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "sw_batch_size"),
    [
        ((20, 20, 20), (16, 16, 16), 0.5, 3),
        ((16, 16, 16), (16, 16, 16), 0.5, 1),
        ((10, 13, 24), (16, 16, 16), 0.5, 2),  # padded on two axes
        ((33, 18, 25), (16, 16, 16), 0.25, 4),
        ((24, 24, 17), (8, 16, 8), 0.6, 5),
    ],
)
def test_sliding_window_matches_monai(
    network: torch.nn.Module,
    shape: tuple[int, int, int],
    roi: tuple[int, int, int],
    overlap: float,
    sw_batch_size: int,
) -> None:
    rng = np.random.default_rng(sum(shape))
    volume = rng.normal(size=(4, *shape)).astype(np.float32)
    calls: list[int] = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        with torch.no_grad():
            return network(torch.from_numpy(batch)).numpy()

    ours = window_module.sliding_window_inference(volume, roi, overlap, sw_batch_size, predictor)
    with torch.no_grad():
        expected = monai_sliding_window(
            torch.from_numpy(volume)[None],
            roi,
            sw_batch_size,
            network,
            overlap=overlap,
            mode="gaussian",
        )[0].numpy()
    assert ours.shape == (3, *shape) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert max(calls) <= sw_batch_size


@pytest.mark.parametrize(
    ("size", "roi", "overlap"), [(20, 16, 0.5), (16, 16, 0.5), (100, 96, 0.5), (33, 16, 0.25)]
)
def test_window_starts_cover_the_axis(size: int, roi: int, overlap: float) -> None:
    starts = window_module.window_starts(size, roi, overlap)
    assert starts[0] == 0 and starts[-1] == size - roi
    assert all(b - a <= roi for a, b in itertools.pairwise(starts))


def test_bad_predictor_output_is_reported() -> None:
    volume = np.zeros((4, 16, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="predictor returned"):
        window_module.sliding_window_inference(
            volume, (16, 16, 16), 0.5, 1, lambda batch: batch[:, :, :8]
        )
