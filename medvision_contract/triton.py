"""Helpers for Triton Python models: their own ``config.pbtxt`` parameters (passed as
JSON) and calls to other models through Business Logic Scripting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def parameter(config: Mapping[str, Any], key: str, default: str) -> str:
    """The string value of ``parameters[key]`` in a model config, ``default`` when absent
    or empty."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return str(value) if value not in (None, "") else default


class NetworkError(RuntimeError):
    """A network model called through BLS answered with an error."""


def call_model(
    pb_utils: Any,
    model_name: str,
    inputs: Mapping[str, npt.NDArray[Any]],
    outputs: Sequence[str],
) -> dict[str, npt.NDArray[Any]]:
    """Run ``model_name`` on ``inputs`` through Business Logic Scripting, in CPU memory.

    ``pb_utils`` is the ``triton_python_backend_utils`` module of the calling model (it only
    exists inside Triton). Returns the ``outputs`` by name; raises :class:`NetworkError`
    with the server's message when the model answers with an error.
    """
    request = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=list(outputs),
        inputs=[
            pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=np.float32))
            for name, value in inputs.items()
        ],
        preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
    )
    response = request.exec()
    if response.has_error():
        raise NetworkError(f"{model_name}: {response.error().message()}")
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}


def error_response(pb_utils: Any, model_name: str, error: Exception, *, bad_request: bool) -> Any:
    """The ``InferenceResponse`` carrying ``error`` for one request, prefixed with the model
    name: ``INVALID_ARG`` when the request itself is bad, an internal error otherwise (e.g.
    a network model called through BLS failed)."""
    message = f"{model_name}: {error}"
    if bad_request:
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        )
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
