"""Triton Python model ``brats_preprocess``: per-channel brain z-score of an MRI volume.

Input ``VOLUME`` FP32 [4, X, Y, Z] (T1, T1ce, T2, FLAIR on one grid, background 0); output
``VOLUME_NORM`` FP32 [4, X, Y, Z]: each channel z-scored over its nonzero (brain) voxels,
background kept at 0 (``training.data.preprocess.brain_zscore``, as in training).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from medvision_contract.labels import MRI_CHANNELS
from medvision_contract.preprocess import brain_zscore
from medvision_contract.triton import error_response, parameter


def validate_volume(volume: np.ndarray, max_voxels: int) -> None:
    """Raise ``ValueError`` unless ``volume`` is a finite, non-empty [4, X, Y, Z] volume."""
    if volume.ndim != 4 or volume.shape[0] != len(MRI_CHANNELS):
        raise ValueError(
            f"VOLUME must be [{len(MRI_CHANNELS)}, X, Y, Z] ({', '.join(MRI_CHANNELS)}), "
            f"got shape {volume.shape}"
        )
    if volume.size == 0:
        raise ValueError(f"VOLUME is empty (shape {volume.shape})")
    if volume[0].size > max_voxels:
        raise ValueError(f"VOLUME has {volume[0].size} voxels per channel, more than {max_voxels}")
    if not np.isfinite(volume).all():
        raise ValueError("VOLUME contains NaN or infinite values")


class TritonPythonModel:
    """Brain z-score, one volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``max_voxels`` (per channel)."""
        config = json.loads(args["model_config"])
        self.max_voxels = int(parameter(config, "max_voxels", "33554432"))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the normalised volume, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            volume = pb_utils.get_input_tensor_by_name(request, "VOLUME").as_numpy()
            validate_volume(volume, self.max_voxels)
            normalised = brain_zscore(volume)
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "brats_preprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("VOLUME_NORM", normalised)]
        )

    def finalize(self) -> None:
        """Nothing to release."""
