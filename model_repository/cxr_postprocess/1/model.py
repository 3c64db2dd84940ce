"""Triton Python model ``cxr_postprocess``: ``cxr_net`` outputs to findings.

Inputs ``LOGITS`` FP32 [1, L] (or [L]), ``CAMS`` FP32 [1, L, h, w] and ``GEOMETRY`` FP32 [5]
from ``cxr_preprocess``. Outputs ``PROBABILITIES`` FP32 [L] (sigmoid), ``POSITIVE`` BOOL
[L] (probability >= the label's threshold) and ``CAM`` UINT8 [L, H, W] on the original
image grid (``medvision_contract.cams``). L = 14 labels in ChestX-ray14 order.
"""

from __future__ import annotations

import json
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract import cams
from medvision_contract.labels import CXR_LABELS
from medvision_contract.triton import error_response, parameter


class TritonPythonModel:
    """Sigmoid, per-label thresholds and CAMs mapped back onto the radiograph."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``labels``, ``thresholds`` and ``input_size``."""
        self.cams = cams
        config = json.loads(args["model_config"])
        labels = [
            name.strip() for name in parameter(config, "labels", ",".join(CXR_LABELS)).split(",")
        ]
        if tuple(labels) != CXR_LABELS:
            raise ValueError(f"cxr_postprocess: labels must be {CXR_LABELS} in order, got {labels}")
        self.num_labels = len(labels)
        self.thresholds = cams.parse_floats(
            parameter(config, "thresholds", "0.5"), self.num_labels, "thresholds"
        )
        self.size = int(parameter(config, "input_size", "224"))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: probabilities, positives and CAMs, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            cams = pb_utils.get_input_tensor_by_name(request, "CAMS").as_numpy()
            geometry = pb_utils.get_input_tensor_by_name(request, "GEOMETRY").as_numpy()
            if logits.size != self.num_labels:
                raise ValueError(f"LOGITS must hold {self.num_labels} values, got {logits.shape}")
            if cams.ndim == 4 and cams.shape[0] == 1:
                cams = cams[0]
            if cams.ndim != 3 or cams.shape[0] != self.num_labels or 0 in cams.shape:
                raise ValueError(f"CAMS must be [1, {self.num_labels}, h, w], got {cams.shape}")
            probabilities = self.cams.sigmoid(logits.reshape(-1))
            positive = probabilities >= self.thresholds
            cam = self.cams.cams_to_image(cams, geometry, self.size)
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "cxr_postprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("PROBABILITIES", probabilities),
                pb_utils.Tensor("POSITIVE", positive),
                pb_utils.Tensor("CAM", cam),
            ]
        )

    def finalize(self) -> None:
        """Nothing to release."""
