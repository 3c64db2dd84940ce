"""Access to the committed model repository and its numpy modules from the tests."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def load_model_module(model: str, module: str) -> ModuleType:
    """Import ``model_repository/<model>/1/<module>.py`` (a numpy module beside a model.py)."""
    name = f"_model_repository_{model}_{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / model / "1" / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def reference_bits(pixels: np.ndarray) -> int:
    """The documented bit-depth rule, written independently: max(8, ceil(log2(max + 1)))."""
    return max(8, math.ceil(math.log2(int(pixels.max()) + 1)))


def reference_cam_uint8(maps: np.ndarray) -> np.ndarray:
    """Per-label min-max scaling of float maps [L, H, W] to 0..255.

    Maps whose range is within 1e-5 of their magnitude (at least 1) count as constant: 0.
    """
    out = np.zeros(maps.shape, dtype=np.uint8)
    for index, cam in enumerate(maps.astype(np.float64)):
        low, high = cam.min(), cam.max()
        if high - low > 1e-5 * max(1.0, abs(low), abs(high)):
            out[index] = np.rint((cam - low) / (high - low) * 255.0).astype(np.uint8)
    return out
