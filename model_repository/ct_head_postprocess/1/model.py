"""Triton Python model ``ct_head_postprocess``: slice outputs to study findings.

Inputs ``LOGITS`` FP32 [S, 6], ``CAMS`` FP32 [S, 6, h, w] (from ``ct_head_classify``) and
``GEOMETRY`` FP32 [5] (from ``ct_head_preprocess``). Outputs ``SLICE_PROBABILITIES`` FP32
[S, 6], ``PROBABILITIES`` FP32 [6] (maximum over slices), ``POSITIVE`` BOOL [6] (probability
>= the label's threshold) and ``HEATMAP`` UINT8 [S, H', W'] (the ``any`` map of each slice,
longer side ``cam_max_side``), all from ``medvision_contract.ct_outputs``. Labels in
``CT_HEAD_LABELS`` order.
"""

from __future__ import annotations

import json
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract.cams import parse_floats
from medvision_contract.ct_outputs import ct_head_outputs
from medvision_contract.labels import CT_HEAD_LABELS
from medvision_contract.triton import error_response, parameter

OUTPUTS = ("SLICE_PROBABILITIES", "PROBABILITIES", "POSITIVE", "HEATMAP")


class TritonPythonModel:
    """Sigmoid, maximum over slices, thresholds and heat maps, one study per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``labels``, ``thresholds``, ``input_size`` and ``cam_max_side``."""
        config = json.loads(args["model_config"])
        labels = [
            name.strip()
            for name in parameter(config, "labels", ",".join(CT_HEAD_LABELS)).split(",")
        ]
        if tuple(labels) != CT_HEAD_LABELS:
            raise ValueError(
                f"ct_head_postprocess: labels must be {CT_HEAD_LABELS} in order, got {labels}"
            )
        self.thresholds = parse_floats(
            parameter(config, "thresholds", "0.5"), len(labels), "thresholds"
        )
        self.size = int(parameter(config, "input_size", "256"))
        self.cam_max_side = int(parameter(config, "cam_max_side", "256"))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the four study outputs, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            outputs = ct_head_outputs(
                pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy(),
                pb_utils.get_input_tensor_by_name(request, "CAMS").as_numpy(),
                pb_utils.get_input_tensor_by_name(request, "GEOMETRY").as_numpy(),
                thresholds=self.thresholds,
                input_size=self.size,
                cam_max_side=self.cam_max_side,
            )
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "ct_head_postprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, outputs[name]) for name in OUTPUTS]
        )

    def finalize(self) -> None:
        """Nothing to release."""
