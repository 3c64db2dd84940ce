"""Triton Python model ``brats_postprocess``: region probabilities to a label map and volumes.

Inputs ``PROBABILITIES`` FP32 [3, X, Y, Z] (ET, TC, WT) and ``SPACING_MM`` FP32 [3] (voxel
size along X, Y, Z). Outputs ``LABELS`` UINT8 [X, Y, Z] (0 background, 1 NCR, 2 ED, 3 ET;
regions thresholded at ``threshold`` with nesting enforced inside WT,
``training.regions.regions_to_labels``) and ``REGION_ML`` FP32 [3] (ET, TC, WT volumes in
millilitres of that label map, ``training.regions.region_volumes_ml``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from medvision_contract.labels import BRATS_REGIONS
from medvision_contract.regions import region_volumes_ml, regions_to_labels
from medvision_contract.triton import error_response, parameter


class TritonPythonModel:
    """Threshold, nest and measure, one volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``threshold``."""
        config = json.loads(args["model_config"])
        self.threshold = float(parameter(config, "threshold", "0.5"))
        if not 0 < self.threshold < 1:
            raise ValueError(
                f"brats_postprocess: threshold must be in (0, 1), got {self.threshold}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the label map and region volumes, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            probabilities = pb_utils.get_input_tensor_by_name(request, "PROBABILITIES").as_numpy()
            spacing = pb_utils.get_input_tensor_by_name(request, "SPACING_MM").as_numpy()
            spacing = spacing.reshape(-1).astype(np.float64)
            if spacing.size != 3 or not (np.isfinite(spacing).all() and (spacing > 0).all()):
                raise ValueError(
                    f"SPACING_MM must be 3 positive millimetre values, got {spacing.tolist()}"
                )
            if probabilities.ndim != 4 or probabilities.shape[0] != len(BRATS_REGIONS):
                raise ValueError(f"PROBABILITIES must be [3, X, Y, Z], got {probabilities.shape}")
            labels = regions_to_labels(probabilities, self.threshold)
            volumes = region_volumes_ml(labels, spacing.tolist())
            region_ml = np.array([volumes[name] for name in BRATS_REGIONS], dtype=np.float32)
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "brats_postprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("LABELS", labels),
                pb_utils.Tensor("REGION_ML", region_ml),
            ]
        )

    def finalize(self) -> None:
        """Nothing to release."""
