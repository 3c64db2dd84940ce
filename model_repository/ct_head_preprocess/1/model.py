"""Triton Python model ``ct_head_preprocess``: a head CT volume to ``ct_head_net`` inputs.

Inputs ``VOLUME`` INT16 [S, H, W] (Hounsfield units after rescale, slices first in
position order) and ``SPACING_MM`` FP32 [3] (slice, row, column spacing; checked, the slices
are fitted to the input size whatever their pixel size). Outputs ``SLICES`` FP32
[S, C, N, N] (each slice's HU windows, with ``context_slices`` neighbours each side:
``medvision_contract.ct_windows.ct_head_input``, the code training uses) and ``GEOMETRY``
FP32 [5] (height, width, scale, pad_y, pad_x). A bad request gets an error of its own.
"""

from __future__ import annotations

import json
from typing import Any

import triton_python_backend_utils as pb_utils

from medvision_contract.ct_windows import (
    CT_HEAD_WINDOWS,
    ct_head_input,
    format_windows,
    parse_windows,
    validate_volume,
)
from medvision_contract.triton import error_response, keep_freed_memory, parameter


class TritonPythonModel:
    """Fit, window and stack the slices of one volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read ``input_size``, ``context_slices``, ``windows`` and ``max_voxels``."""
        keep_freed_memory()  # large per-request temporaries reuse the heap (cxr_preprocess)
        config = json.loads(args["model_config"])
        self.size = int(parameter(config, "input_size", "256"))
        self.context = int(parameter(config, "context_slices", "1"))
        self.windows = parse_windows(parameter(config, "windows", format_windows(CT_HEAD_WINDOWS)))
        self.max_voxels = int(parameter(config, "max_voxels", str(512**3)))
        if self.size < 16 or self.context < 0 or self.max_voxels < 1:
            raise ValueError(
                f"ct_head_preprocess: bad parameters input_size={self.size} "
                f"context_slices={self.context} max_voxels={self.max_voxels}"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the windowed slices and geometry, or an error."""
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        try:
            volume = pb_utils.get_input_tensor_by_name(request, "VOLUME").as_numpy()
            spacing = pb_utils.get_input_tensor_by_name(request, "SPACING_MM").as_numpy()
            validate_volume(volume, spacing, self.max_voxels)
            slices, geometry = ct_head_input(
                volume, size=self.size, context=self.context, windows=self.windows
            )
        except Exception as error:  # every failure becomes this request's error response
            return error_response(pb_utils, "ct_head_preprocess", error, bad_request=True)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("SLICES", slices),
                pb_utils.Tensor("GEOMETRY", geometry),
            ]
        )

    def finalize(self) -> None:
        """Nothing to release."""
