"""Triton Python model ``cxr_postprocess``: ``cxr_net`` outputs to findings.

Inputs ``LOGITS`` FP32 [1, L] (or [L]), ``CAMS`` FP32 [1, L, h, w] and ``GEOMETRY`` FP32 [5]
from ``cxr_preprocess``. Outputs ``PROBABILITIES`` FP32 [L] (sigmoid), ``POSITIVE`` BOOL
[L] (probability >= the label's threshold) and ``CAM`` UINT8 [L, H', W'] (the image's
aspect ratio, longer side ``cam_max_side``), all from ``medvision_contract.cxr_outputs``.
L = 14 labels in ChestX-ray14 order.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract.cxr_outputs import cxr_outputs
from medvision_contract.labels import CXR_LABELS
from medvision_contract.triton import classifier_parameters, keep_freed_memory, respond

INPUTS = ("LOGITS", "CAMS", "GEOMETRY")
OUTPUTS = ("PROBABILITIES", "POSITIVE", "CAM")


class TritonPythonModel:
    """Sigmoid, per-label thresholds and CAMs mapped onto the radiograph."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``labels``, ``thresholds``, ``input_size`` and ``cam_max_side``."""
        keep_freed_memory()
        config = json.loads(args["model_config"])
        parameters = classifier_parameters(config, "cxr_postprocess", CXR_LABELS, input_size=224)
        self.outputs = functools.partial(cxr_outputs, parameters=parameters)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: probabilities, positives and CAMs, or an error."""
        return [
            respond(pb_utils, request, "cxr_postprocess", INPUTS, self.outputs, OUTPUTS)
            for request in requests
        ]

    def finalize(self) -> None:
        """Nothing to release."""
