"""Triton Python model ``cxr_preprocess``: raw X-ray pixels to the ``cxr_net`` input.

Inputs ``PIXELS`` UINT16 [rows, columns] (stored values after the modality LUT) and
``INVERT`` BOOL [1] (MONOCHROME1). Outputs ``IMAGE`` FP32 [1, 1, S, S] (a batch of one)
and ``GEOMETRY`` FP32 [5] (height, width, scale, pad_y, pad_x). The math lives in
``cxr_pixels.py`` beside this file. A bad request gets an error response of its own.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract.triton import error_response, keep_freed_memory, parameter


class TritonPythonModel:
    """Scale, invert, resize with padding and z-score one radiograph per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``input_size``, ``mean``, ``std``, ``max_pixels`` and ``bits_stored``."""
        sys.path.insert(0, os.path.join(args["model_repository"], args["model_version"]))
        import cxr_pixels

        self.pixels = cxr_pixels
        keep_freed_memory()
        config = json.loads(args["model_config"])
        self.size = int(parameter(config, "input_size", "224"))
        self.mean = float(parameter(config, "mean", "0.5"))
        self.std = float(parameter(config, "std", "0.25"))
        self.max_pixels = int(parameter(config, "max_pixels", "50000000"))
        bits = parameter(config, "bits_stored", "auto")
        self.bits_stored = None if bits == "auto" else int(bits)
        if self.size < 32 or self.std <= 0 or self.max_pixels < 1:
            raise ValueError(
                f"cxr_preprocess: bad parameters input_size={self.size} std={self.std} "
                f"max_pixels={self.max_pixels}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the network input and geometry, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            pixels = pb_utils.get_input_tensor_by_name(request, "PIXELS").as_numpy()
            invert = pb_utils.get_input_tensor_by_name(request, "INVERT").as_numpy()
            self.pixels.validate_pixels(pixels, self.max_pixels)
            if invert.size != 1:
                raise ValueError(f"INVERT must hold one value, got shape {invert.shape}")
            image, geometry = self.pixels.preprocess_pixels(
                pixels,
                invert=bool(invert.reshape(-1)[0]),
                size=self.size,
                mean=self.mean,
                std=self.std,
                bits_stored=self.bits_stored,
            )
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "cxr_preprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("IMAGE", image), pb_utils.Tensor("GEOMETRY", geometry)]
        )

    def finalize(self) -> None:
        """Nothing to release."""
