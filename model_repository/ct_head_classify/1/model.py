"""Triton Python model ``ct_head_classify``: ``ct_head_net`` over every slice of a study (BLS).

Input ``SLICES`` FP32 [S, C, N, N] (from ``ct_head_preprocess``); outputs ``LOGITS`` FP32
[S, 6] and ``CAMS`` FP32 [S, 6, h, w], the network's outputs for every slice in order. The
slices go to the network model (``model_name``, default ``ct_head_net``: input ``SLICES``
[n, C, N, N], outputs ``LOGITS`` [n, 6] and ``CAMS`` [n, 6, h, w]) ``batch_size`` at a time,
so a study of any length stays within the network's ``max_batch_size`` and memory.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from medvision_contract.triton import NetworkError, call_model, error_response, parameter

OUTPUTS = ("LOGITS", "CAMS")


class TritonPythonModel:
    """Batches of slices through the network model, one study per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``batch_size`` and ``model_name``."""
        config = json.loads(args["model_config"])
        self.batch_size = int(parameter(config, "batch_size", "4"))
        self.model_name = parameter(config, "model_name", "ct_head_net")
        if self.batch_size < 1:
            raise ValueError(f"ct_head_classify: batch_size must be >= 1, got {self.batch_size}")

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: logits and CAMs of every slice, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            slices = pb_utils.get_input_tensor_by_name(request, "SLICES").as_numpy()
            if slices.ndim != 4 or 0 in slices.shape:
                raise ValueError(f"SLICES must be a non-empty [S, C, N, N], got {slices.shape}")
            parts = [
                call_model(
                    pb_utils, self.model_name,
                    {"SLICES": slices[start : start + self.batch_size]}, OUTPUTS,
                )
                for start in range(0, slices.shape[0], self.batch_size)
            ]  # fmt: skip
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in OUTPUTS}
        except NetworkError as error:
            return error_response(pb_utils, "ct_head_classify", error, bad_request=False)
        except Exception as error:  # every other failure is a bad request
            return error_response(pb_utils, "ct_head_classify", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(name, outputs[name].astype(np.float32)) for name in OUTPUTS
            ]
        )

    def finalize(self) -> None:
        """Nothing to release."""
