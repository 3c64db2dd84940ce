"""Triton Python model ``brats_segment``: sliding-window inference over ``brats_net`` (BLS).

Input ``VOLUME_NORM`` FP32 [4, X, Y, Z] (from ``brats_preprocess``); output
``PROBABILITIES`` FP32 [3, X, Y, Z], the sigmoid of the Gaussian-blended region logits (ET,
TC, WT). Windows of ``roi`` voxels go to the network model (``model_name``, default
``brats_net``: input ``PATCH`` [n, 4, R, R, R], output ``LOGITS`` [n, 3, R, R, R])
``sw_batch_size`` at a time through Business Logic Scripting. The window math is
``sliding_window.py`` beside this file (parity with MONAI is tested).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from medvision_contract.triton import NetworkError, call_model, error_response, parameter


class TritonPythonModel:
    """MONAI-style sliding-window segmentation, one volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``roi`` (one size or three, comma-separated), ``overlap``, ``sw_batch_size``."""
        sys.path.insert(0, os.path.join(args["model_repository"], args["model_version"]))
        import sliding_window

        self.window = sliding_window
        config = json.loads(args["model_config"])
        roi = [int(part) for part in parameter(config, "roi", "96").split(",") if part.strip()]
        self.roi = tuple(roi * 3 if len(roi) == 1 else roi)
        self.overlap = float(parameter(config, "overlap", "0.5"))
        self.sw_batch_size = int(parameter(config, "sw_batch_size", "2"))
        self.model_name = parameter(config, "model_name", "brats_net")
        if len(self.roi) != 3 or min(self.roi) < 1:
            raise ValueError(f"brats_segment: roi must be one or three positive sizes, got {roi}")
        if not 0 <= self.overlap < 1 or self.sw_batch_size < 1:
            raise ValueError(
                f"brats_segment: need 0 <= overlap < 1 and sw_batch_size >= 1, "
                f"got {self.overlap}, {self.sw_batch_size}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: region probabilities, or an error."""
        return [self._respond(request) for request in requests]

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """Logits [n, 3, *roi] of a window batch [n, 4, *roi] from the network model."""
        return call_model(pb_utils, self.model_name, {"PATCH": batch}, ["LOGITS"])["LOGITS"]

    def _respond(self, request: Any) -> Any:
        try:
            volume = pb_utils.get_input_tensor_by_name(request, "VOLUME_NORM").as_numpy()
            if volume.ndim != 4 or 0 in volume.shape:
                raise ValueError(
                    f"VOLUME_NORM must be a non-empty [4, X, Y, Z], got {volume.shape}"
                )
            logits = self.window.sliding_window_inference(
                volume, self.roi, self.overlap, self.sw_batch_size, self._predict
            )
            probabilities = (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
        except NetworkError as error:
            return error_response(pb_utils, "brats_segment", error, bad_request=False)
        except Exception as error:  # every other failure is a bad request
            return error_response(pb_utils, "brats_segment", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("PROBABILITIES", probabilities)]
        )

    def finalize(self) -> None:
        """Nothing to release."""
