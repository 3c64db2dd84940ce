"""Helpers for Triton Python models: their own ``config.pbtxt`` parameters (passed as
JSON) and calls to other models through Business Logic Scripting."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from medvision_contract.cams import PostprocessParameters, parse_floats

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_ALLOCATION_BYTES = 64 << 20


def keep_freed_memory(max_bytes: int = HEAP_ALLOCATION_BYTES) -> bool:
    """Have glibc serve allocations up to ``max_bytes`` from the heap and keep what is freed
    (``mallopt`` ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``), for this process.

    A Python model allocates the same multi-MiB numpy temporaries on every request; by
    default glibc maps and unmaps each one, and every page of it faults again on the next
    request: ``cxr_preprocess`` of a 1024² radiograph took 10 ms inside its Triton stub
    against 3 ms once the memory is kept. The cost is the process keeping its peak heap.
    Returns False (and changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, max_bytes)) and bool(
        mallopt(M_TRIM_THRESHOLD, 4 * max_bytes)
    )


def parameter(config: Mapping[str, Any], key: str, default: str) -> str:
    """The string value of ``parameters[key]`` in a model config, ``default`` when absent
    or empty."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return str(value) if value not in (None, "") else default


def classifier_parameters(
    config: Mapping[str, Any], model_name: str, labels: Sequence[str], *, input_size: int
) -> PostprocessParameters:
    """The ``parameters`` of a classifier's post-processing model: ``thresholds`` (one per
    label, or one for all), ``input_size`` (``input_size`` when absent) and
    ``cam_max_side`` (256 when absent).

    Raises ``ValueError`` when the config's ``labels`` are not ``labels`` in order (the
    network's outputs would be read under the wrong names) or a value is out of range.
    """
    found = [name.strip() for name in parameter(config, "labels", ",".join(labels)).split(",")]
    if found != list(labels):
        raise ValueError(f"{model_name}: labels must be {tuple(labels)} in order, got {found}")
    cam_max_side = int(parameter(config, "cam_max_side", "256"))
    if cam_max_side < 1:
        raise ValueError(f"{model_name}: cam_max_side {cam_max_side} is not positive")
    return PostprocessParameters(
        thresholds=parse_floats(parameter(config, "thresholds", "0.5"), len(labels), "thresholds"),
        input_size=int(parameter(config, "input_size", str(input_size))),
        cam_max_side=cam_max_side,
    )


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


def respond(
    pb_utils: Any,
    request: Any,
    model_name: str,
    inputs: Sequence[str],
    compute: Callable[..., Mapping[str, npt.NDArray[Any]]],
    outputs: Sequence[str],
) -> Any:
    """The ``InferenceResponse`` for one request: ``compute`` called with the request's
    ``inputs`` (numpy arrays, in that order), its ``outputs`` sent by name. Any exception
    becomes this request's ``INVALID_ARG`` error response (:func:`error_response`)."""
    try:
        found = compute(
            *(pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in inputs)
        )
    except Exception as error:  # every failure becomes this request's error response
        return error_response(pb_utils, model_name, error, bad_request=True)
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(name, found[name]) for name in outputs]
    )
