"""Triton Python model ``ct_head_postprocess``: slice outputs to study findings.

Inputs ``LOGITS`` FP32 [S, 6], ``CAMS`` FP32 [S, 6, h, w] (from ``ct_head_classify``) and
``GEOMETRY`` FP32 [5] (from ``ct_head_preprocess``). Outputs ``SLICE_PROBABILITIES`` FP32
[S, 6], ``PROBABILITIES`` FP32 [6] (maximum over slices), ``POSITIVE`` BOOL [6] (probability
>= the label's threshold) and ``HEATMAP`` UINT8 [S, H', W'] (the ``any`` map of each slice,
longer side ``cam_max_side``), all from ``medvision_contract.ct_outputs``. Labels in
``CT_HEAD_LABELS`` order.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract.ct_outputs import ct_head_outputs
from medvision_contract.labels import CT_HEAD_LABELS
from medvision_contract.triton import classifier_parameters, keep_freed_memory, respond

INPUTS = ("LOGITS", "CAMS", "GEOMETRY")
OUTPUTS = ("SLICE_PROBABILITIES", "PROBABILITIES", "POSITIVE", "HEATMAP")


class TritonPythonModel:
    """Sigmoid, maximum over slices, thresholds and heat maps, one study per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``labels``, ``thresholds``, ``input_size`` and ``cam_max_side``."""
        keep_freed_memory()
        config = json.loads(args["model_config"])
        parameters = classifier_parameters(
            config, "ct_head_postprocess", CT_HEAD_LABELS, input_size=256
        )
        self.outputs = functools.partial(ct_head_outputs, parameters=parameters)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the four study outputs, or an error."""
        return [
            respond(pb_utils, request, "ct_head_postprocess", INPUTS, self.outputs, OUTPUTS)
            for request in requests
        ]

    def finalize(self) -> None:
        """Nothing to release."""
