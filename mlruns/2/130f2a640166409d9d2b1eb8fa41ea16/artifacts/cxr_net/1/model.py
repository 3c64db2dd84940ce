"""Triton Python-backend model running ``model.onnx`` (next to this file) with onnxruntime.

Copied by ``medvision export --format python-onnx`` into ``<model>/<version>/model.py``.
The pip-installed Triton only has the Python backend, so networks run this way there; the
NVIDIA container's ONNX Runtime backend (``--format onnx``) serves the same ``model.onnx``.

Config parameters read: ``intra_op_num_threads`` (0 = onnxruntime's default) and
``providers`` (comma-separated onnxruntime execution providers, unavailable ones skipped).
Spin-waiting is disabled: on small CPU counts it costs about a quarter of the throughput.
With dynamic batching Triton hands ``execute`` several requests; their inputs are
concatenated along the batch axis, run once, and the outputs split back per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_batched(
    run: RunFn, requests: Sequence[Mapping[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Run several requests' inputs as one batch; returns each request's outputs in order.

    Every request maps input names to arrays with a leading batch axis; all requests must
    carry the same input names. Outputs are split back by each request's batch size.
    """
    if not requests:
        return []
    names = list(requests[0])
    sizes = [int(next(iter(request.values())).shape[0]) for request in requests]
    for request in requests:
        if set(request) != set(names):
            raise ValueError(f"requests carry different inputs: {sorted(request)} vs {names}")
    if len(requests) == 1:
        feeds = {name: np.ascontiguousarray(requests[0][name]) for name in names}
    else:
        feeds = {name: np.concatenate([r[name] for r in requests], axis=0) for name in names}
    outputs = run(feeds)
    bounds = np.cumsum(sizes)[:-1]
    per_output = {name: np.split(value, bounds, axis=0) for name, value in outputs.items()}
    return [{name: parts[i] for name, parts in per_output.items()} for i in range(len(requests))]


def _parameter(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value not in (None, "") else default


class TritonPythonModel:
    """Serves the ONNX network next to this file under the names in ``config.pbtxt``."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open an onnxruntime session on ``model.onnx`` of this model version."""
        config = json.loads(args["model_config"])
        self.input_names = [spec["name"] for spec in config["input"]]
        self.output_names = [spec["name"] for spec in config["output"]]
        self.output_dtypes = {
            spec["name"]: pb_utils.triton_string_to_numpy(spec["data_type"])
            for spec in config["output"]
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(config, "intra_op_num_threads", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = _parameter(config, "providers", "CPUExecutionProvider").split(",")
        available = set(ort.get_available_providers())
        providers = [p.strip() for p in wanted if p.strip() in available] or [
            "CPUExecutionProvider"
        ]
        model_path = Path(__file__).resolve().parent / "model.onnx"
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=providers
        )

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; on failure every request gets the error."""
        try:
            inputs = [
                {
                    name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.input_names
                }
                for request in requests
            ]
            results = run_batched(self._run, inputs)
        except Exception as error:  # one bad batch must not take the model down
            message = f"{type(error).__name__}: {error}"
            return [
                pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
                for _ in requests
            ]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, result[name].astype(self.output_dtypes[name]))
                    for name in self.output_names
                ]
            )
            for result in results
        ]

    def finalize(self) -> None:
        """Release the onnxruntime session."""
        del self.session
