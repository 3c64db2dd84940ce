"""Tests for the Triton server manager and client; helpers that write tiny Python-backend models."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from control.triton.server import TritonStartError, find_triton_install

DOUBLE_CONFIG = """
name: "double"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
parameters { key: "labels" value: { string_value: "a,b" } }
parameters { key: "model_version" value: { string_value: "7" } }
"""

# Y = 2 X. A NaN in X is refused as bad content (INVALID_ARG); -999 makes execute() raise.
# It imports ``control`` to prove models see the repository root on PYTHONPATH.
DOUBLE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

import control


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if np.isnan(x).any():
                error = pb_utils.TritonError("X contains NaN", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            if (x == -999).any():
                raise pb_utils.TritonModelException("exploded on -999")
            y = pb_utils.Tensor("Y", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse([y]))
        return responses
"""

ECHO_TYPES = {"U16": "UINT16", "B": "BOOL", "U8": "UINT8", "I32": "INT32", "I64": "INT64"}

ECHO_CONFIG = (
    'name: "echo"\nbackend: "python"\nmax_batch_size: 0\n'
    + "".join(
        f'input [ {{ name: "{name}" data_type: TYPE_{dtype} dims: [ -1, -1 ] }} ]\n'
        f'output [ {{ name: "{name}_OUT" data_type: TYPE_{dtype} dims: [ -1, -1 ] }} ]\n'
        for name, dtype in ECHO_TYPES.items()
    )
    + "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
)

ECHO_MODEL = f"""
import triton_python_backend_utils as pb_utils

NAMES = {list(ECHO_TYPES)!r}


def echo(request):
    tensors = [pb_utils.get_input_tensor_by_name(request, name) for name in NAMES]
    return [pb_utils.Tensor(t.name() + "_OUT", t.as_numpy()) for t in tensors]


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(echo(request)) for request in requests]
"""

SLEEPY_CONFIG = """
name: "sleepy"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

SLEEPY_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.started = os.path.join(args["model_repository"], "started")

    def execute(self, requests):
        with open(self.started, "a") as marker:  # lets a test wait for execution to begin
            marker.write("started\\n")
        time.sleep(1.5)
        return [
            pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "X")])
            for r in requests
        ]
"""


def write_model(repository: Path, name: str, config: str, code: str) -> None:
    """Write ``repository/name/config.pbtxt`` and ``repository/name/1/model.py``."""
    version = repository / name / "1"
    version.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (version / "model.py").write_text(textwrap.dedent(code))


def write_test_repository(repository: Path) -> Path:
    """A repository with the ``double``, ``echo`` and ``sleepy`` test models."""
    write_model(repository, "double", DOUBLE_CONFIG, DOUBLE_MODEL)
    write_model(repository, "echo", ECHO_CONFIG, ECHO_MODEL)
    write_model(repository, "sleepy", SLEEPY_CONFIG, SLEEPY_MODEL)
    return repository


async def sleepy_started(repository: Path, executions: int, timeout_s: float = 30) -> None:
    """Wait until the ``sleepy`` model has begun its ``executions``-th execution."""
    marker = repository / "sleepy" / "started"
    deadline = time.monotonic() + timeout_s
    while not marker.exists() or len(marker.read_text().splitlines()) < executions:
        assert time.monotonic() < deadline, "sleepy never started executing"
        await asyncio.sleep(0.01)


def skip_without_triton() -> None:
    """Skip the calling test module when the nvidia-pytriton Triton build is not installed."""
    try:
        find_triton_install()
    except TritonStartError as exc:
        pytest.skip(f"tritonserver binary not available: {exc.message}", allow_module_level=True)
