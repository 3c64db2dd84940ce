"""Chest X-ray serving through Triton against the same pipeline run in-process.

    .venv/bin/python -m bench.triton_cxr [--model densenet121|demo|tiny] [--reps 30]
        [--clients 8] [--requests 80] [--perf-analyzer PATH] [--postprocess-instances N]
        [--net-instances N] [--net-intra-op T] [--cam-max-side N] [--rounds 3] [--quick]

``--quick`` (5 latency repetitions, 16 requests, no perf_analyzer; about a minute) is for a
developer checking a change; the README's figures come from the full mode.

A temporary model repository gets the committed ``cxr`` ensemble and its pre/post models
plus a ``cxr_net`` exported by ``export.repository.export_model`` (``python-onnx``, the
only network format the pip-installed Triton serves) from a randomly initialised network
of the chosen preset (timing does not depend on the weights). The input is pydicom's
``CT_small.dcm`` after the modality LUT, upscaled to 1024 x 1024 and sent as UINT16.

Figures:

- ensemble overhead: median ``cxr`` latency over gRPC through ``TritonClient`` (system
  shared memory for the input on, then off; and a raw client with the outputs in shared
  memory too) divided by the median of the same numpy pre/post-processing
  (``cxr_pixels.py`` imported by path, ``medvision_contract.cxr_outputs`` with the
  ``cxr_postprocess`` config's parameters, as that model runs it) and onnxruntime session
  (the runner's options) called in this process;
  the variants run interleaved, call by call, so load from other processes hits them alike;
- throughput: ``--clients`` concurrent asyncio tasks sending ``--requests`` requests in
  all, requests/s divided by the best in-process throughput (thread pools of 1 and 2
  workers over the pipeline); measured in ``--rounds`` rounds that each run every variant
  (in-process and Triton) once, rotated, and averaged, so load from other processes hits
  both sides of the ratio alike;
- ``--cam-max-side 1024`` serves the CAM at the full image size, as the ``cxr`` contract did
  before issue 14: the same script measures the contract before and after;
- CPU per request: user + system CPU seconds (``/proc/<pid>/stat``) of tritonserver, each
  Python-backend stub and this (client) process across each Triton throughput run, and of
  this process across each 2-thread in-process run, divided by the requests (warm-up
  included); their sum bounds the rate 2 cores allow;
- perf_analyzer at concurrency 1 and ``--clients`` when its binary is found (``--perf-analyzer``
  or ``$PERF_ANALYZER``; see :data:`PERF_ANALYZER_HELP`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.machine import describe
from bench.stack import model_parameters

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
CXR_MODELS = ("cxr", "cxr_preprocess", "cxr_postprocess")
OUTPUTS = ["PROBABILITIES", "POSITIVE", "CAM"]
SIZE, MEAN, STD, THRESHOLD = 224, 0.5, 0.25, 0.5
IMAGE_SIDE = 1024
PERF_ANALYZER_HELP = """perf_analyzer not found: skipped. To run it:
  pip download --no-deps tritonclient==2.51.0 -d /tmp/tc251
  (cd /tmp/tc251 && unzip -q -o tritonclient-2.51.0-*.whl 'tritonclient-2.51.0.data/*')
  export PERF_ANALYZER=/tmp/tc251/tritonclient-2.51.0.data/data/bin/perf_analyzer
(or pass --perf-analyzer PATH). Its libb64.so.0d and libcudart.so.12 are taken from the
nvidia-pytriton wheel's nvidia_pytriton.libs (this script links them under their plain names)."""

Pipeline = Callable[[np.ndarray, bool], dict[str, np.ndarray]]


# --------------------------------------------------------------------------- repository


def build_repository(root: Path, preset: str) -> Path:
    """A repository with the committed CXR ensemble and a freshly exported ``cxr_net``."""
    import torch

    from export.repository import export_model
    from training.engine.checkpoint import save_checkpoint
    from training.labels import CXR_LABELS
    from training.networks.cxr import build_cxr_net

    repository = root / "model_repository"
    for name in CXR_MODELS:
        shutil.copytree(
            REPOSITORY / name, repository / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    torch.manual_seed(0)
    network = build_cxr_net(preset).eval()  # type: ignore[arg-type]
    meta = {
        "task": "cxr",
        "labels": list(CXR_LABELS),
        "preset": preset,
        "input_size": SIZE,
        "mean": MEAN,
        "std": STD,
        "synthetic_data": True,
        "thresholds": [THRESHOLD] * len(CXR_LABELS),
        "threshold_method": "default 0.5",
        "training_run_id": "bench-random-weights",
    }
    checkpoint = root / "best.pt"
    save_checkpoint(checkpoint, {"model": network.state_dict(), "meta": meta})
    export_model(
        "cxr", checkpoint=checkpoint, repository=repository, format="python-onnx",
        version=1, progress=False,
    )  # fmt: skip
    return repository


def _cam_bytes(pixels: np.ndarray, cam_max_side: int) -> int:
    """Size of the ``CAM`` output: 14 maps, longer side ``cam_max_side``."""
    from medvision_contract.cams import longest_side_shape

    height, width = longest_side_shape(pixels.shape, cam_max_side)
    return 14 * height * width


def _output_bytes(pixels: np.ndarray, cam_max_side: int) -> dict[str, int]:
    """Shared-memory sizes for the ensemble's outputs (the 14-label CAM dominates)."""
    return {"CAM": _cam_bytes(pixels, cam_max_side), "PROBABILITIES": 14 * 4, "POSITIVE": 14}


def chest_sized_image() -> np.ndarray:
    """CT_small.dcm after the modality LUT (air clipped to 0), bilinear-upscaled to 1024²."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    from training.data.preprocess import resize

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    values = np.clip(apply_modality_lut(dataset.pixel_array, dataset), 0, 65535)
    upscaled = resize(values.astype(np.float32), (IMAGE_SIDE, IMAGE_SIDE))
    return np.clip(np.rint(upscaled), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- in-process


def load_by_path(model: str, module: str, repository: Path) -> ModuleType:
    """Import ``<repository>/<model>/1/<module>.py`` as the Python model does."""
    name = f"_bench_{model}_{module}"
    spec = importlib.util.spec_from_file_location(name, repository / model / "1" / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def runner_session(onnx_path: Path, intra_op_threads: int) -> Any:
    """An onnxruntime session with the options of export's ``onnx_runner.py``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def postprocess(repository: Path) -> Callable[..., dict[str, np.ndarray]]:
    """``cxr_postprocess``'s outputs function with the parameters of its config."""
    try:
        from medvision_contract.cxr_outputs import cxr_outputs
    except ImportError:  # a checkout from before issue 14, measured as "before"
        return _postprocess_before_issue_14(repository)
    from medvision_contract.labels import CXR_LABELS
    from medvision_contract.triton import classifier_parameters

    config = model_parameters(repository, "cxr_postprocess")
    as_json = {"parameters": {key: {"string_value": value} for key, value in config.items()}}
    found = classifier_parameters(as_json, "cxr_postprocess", CXR_LABELS, input_size=SIZE)
    return functools.partial(cxr_outputs, parameters=found)


def _postprocess_before_issue_14(repository: Path) -> Callable[..., dict[str, np.ndarray]]:
    """What ``cxr_postprocess`` ran before issue 14: sigmoid, thresholds, CAMs at image size."""
    from medvision_contract import cams

    config = model_parameters(repository, "cxr_postprocess")
    thresholds = cams.parse_floats(config.get("thresholds", "0.5"), 14, "thresholds")  # type: ignore[attr-defined]

    def outputs(logits: np.ndarray, maps: np.ndarray, geometry: np.ndarray) -> dict[str, Any]:
        probabilities = cams.sigmoid(logits.reshape(-1))
        return {
            "PROBABILITIES": probabilities,
            "POSITIVE": probabilities >= thresholds,
            "CAM": cams.cams_to_image(maps[0], geometry, SIZE),  # type: ignore[attr-defined]
        }

    return outputs


def in_process_pipeline(repository: Path, session: Any) -> Pipeline:
    """Pre-processing, network and post-processing as the three Triton models run them."""
    pixels_module = load_by_path("cxr_preprocess", "cxr_pixels", repository)
    outputs = postprocess(repository)

    def run(pixels: np.ndarray, invert: bool) -> dict[str, np.ndarray]:
        pixels_module.validate_pixels(pixels, 50_000_000)
        image, geometry = pixels_module.preprocess_pixels(
            pixels, invert=invert, size=SIZE, mean=MEAN, std=STD
        )
        logits, cams = session.run(["LOGITS", "CAMS"], {"IMAGE": image})
        return outputs(logits, cams, geometry)

    return run


def stage_times(repository: Path, session: Any, pixels: np.ndarray, reps: int) -> dict[str, float]:
    """Median milliseconds of each in-process stage."""
    pixels_module = load_by_path("cxr_preprocess", "cxr_pixels", repository)
    outputs = postprocess(repository)
    times: dict[str, list[float]] = {"pre": [], "net": [], "post": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        image, geometry = pixels_module.preprocess_pixels(
            pixels, invert=False, size=SIZE, mean=MEAN, std=STD
        )
        t1 = time.perf_counter()
        logits, cams = session.run(["LOGITS", "CAMS"], {"IMAGE": image})
        t2 = time.perf_counter()
        outputs(logits, cams, geometry)
        t3 = time.perf_counter()
        times["pre"].append(t1 - t0)
        times["net"].append(t2 - t1)
        times["post"].append(t3 - t2)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def in_process_throughput(pipeline: Pipeline, pixels: np.ndarray, workers: int, n: int) -> float:
    """Requests/s of ``n`` pipeline calls spread over a pool of ``workers`` threads."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: pipeline(pixels, False), range(2 * workers)))  # warm-up
        started = time.perf_counter()
        list(pool.map(lambda _: pipeline(pixels, False), range(n)))
        return n / (time.perf_counter() - started)


def interleaved_rates(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Mean of each variant's rate over ``rounds`` rounds; each round runs every variant
    once, in an order rotated every round, so a change in load from other processes hits
    the in-process and the Triton variants alike."""
    found: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for index in range(rounds):
        shift = index % len(order)
        for name, measure in order[shift:] + order[:shift]:
            found[name].append(measure())
    return {name: statistics.fmean(values) for name, values in found.items()}


# --------------------------------------------------------------------------- through Triton


def _inputs(pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {"PIXELS": pixels, "INVERT": np.array([False])}


async def interleaved_latency_ms(
    url: str, pipeline: Pipeline, pixels: np.ndarray, reps: int, output_bytes: dict[str, int]
) -> dict[str, float]:
    """Median latency of each way of running the pipeline, interleaved call by call.

    Each repetition runs the in-process pipeline, ``cxr`` through :class:`TritonClient` with
    shared memory on and off, and the raw client with input and output regions, in an order
    rotated every repetition, so a busy machine slows every variant alike.
    """
    from control.triton.client import TritonClient

    async with (
        TritonClient(url, use_shared_memory=True, timeout_s=120) as with_shm,
        TritonClient(url, use_shared_memory=False, timeout_s=120) as without_shm,
    ):
        raw = OutputShmClient(url, pixels, output_bytes["CAM"])
        try:
            variants: dict[str, Callable[[], Any]] = {
                "in-process": lambda: pipeline(pixels, False),
                "shm": lambda: with_shm.infer(
                    "cxr", _inputs(pixels), OUTPUTS, output_bytes=output_bytes
                ),
                "no shm": lambda: without_shm.infer("cxr", _inputs(pixels), OUTPUTS),
                "in+out shm": raw.infer,
            }
            samples: dict[str, list[float]] = {name: [] for name in variants}
            order = list(variants.items())
            for rep in range(reps + 3):  # the first 3 are warm-up
                shift = rep % len(order)  # rotate, so no variant always follows the same one
                for name, call in order[shift:] + order[:shift]:
                    started = time.perf_counter()
                    result = call()
                    if asyncio.iscoroutine(result):
                        await result
                    if rep >= 3:
                        samples[name].append(time.perf_counter() - started)
        finally:
            raw.close()
        if with_shm.shared_memory_stats.requests < reps:
            raise RuntimeError(f"shared memory was not used: {with_shm.shared_memory_stats}")
    return {name: 1e3 * statistics.median(values) for name, values in samples.items()}


async def triton_throughput(
    url: str,
    pixels: np.ndarray,
    clients: int,
    requests: int,
    output_bytes: dict[str, int],
    *,
    shared_client: bool,
) -> float:
    """Requests/s of ``requests`` ``cxr`` calls from ``clients`` concurrent asyncio tasks.

    Each task has a :class:`TritonClient` of its own, or (``shared_client``) all share one.
    """
    from control.triton.client import TritonClient

    pool = [TritonClient(url, timeout_s=300) for _ in range(1 if shared_client else clients)]
    remaining = iter(range(clients))

    async def worker(client: TritonClient) -> None:
        for _ in remaining:
            await client.infer("cxr", _inputs(pixels), OUTPUTS, output_bytes=output_bytes)

    try:
        await asyncio.gather(*(worker(pool[i % len(pool)]) for i in range(clients)))  # warm-up
        remaining = iter(range(requests))
        started = time.perf_counter()
        await asyncio.gather(*(worker(pool[i % len(pool)]) for i in range(clients)))
        return requests / (time.perf_counter() - started)
    finally:
        for client in pool:
            await client.close()


class OutputShmClient:
    """``cxr`` with inputs AND outputs in system shared memory (raw tritonclient).

    :class:`TritonClient` puts only inputs in shared memory; the 14 x h x w uint8 ``CAM``
    comes back inside the gRPC response. This measures what output regions would save.
    """

    def __init__(self, url: str, pixels: np.ndarray, cam_bytes: int) -> None:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.shared_memory as shm

        self.shm = shm
        self.client = grpcclient.InferenceServerClient(url)
        self.prefix = f"bench_{os.getpid()}"
        invert = np.array([False])
        sizes = {
            "pixels": pixels.nbytes, "invert": 64, "prob": 14 * 4, "pos": 64,
            "cam": cam_bytes,
        }  # fmt: skip
        self.handles: dict[str, Any] = {}
        for name, size in sizes.items():
            region = f"{self.prefix}_{name}"
            self.handles[name] = shm.create_shared_memory_region(region, f"/{region}", size)
            self.client.register_system_shared_memory(region, f"/{region}", size)
        shm.set_shared_memory_region(self.handles["pixels"], [pixels])
        shm.set_shared_memory_region(self.handles["invert"], [invert])
        self.inputs = [
            grpcclient.InferInput("PIXELS", list(pixels.shape), "UINT16"),
            grpcclient.InferInput("INVERT", [1], "BOOL"),
        ]
        self.inputs[0].set_shared_memory(f"{self.prefix}_pixels", pixels.nbytes)
        self.inputs[1].set_shared_memory(f"{self.prefix}_invert", invert.nbytes)
        self.outputs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]
        for output, name in zip(self.outputs, ("prob", "pos", "cam"), strict=True):
            output.set_shared_memory(f"{self.prefix}_{name}", sizes[name])

    def infer(self) -> np.ndarray:
        """One request; returns a copy of the CAM read from its output region."""
        result = self.client.infer("cxr", self.inputs, outputs=self.outputs, client_timeout=120)
        shape = list(result.get_output("CAM").shape)
        return self.shm.get_contents_as_numpy(self.handles["cam"], np.uint8, shape).copy()

    def close(self) -> None:
        """Unregister and destroy the regions, close the channel."""
        for name, handle in self.handles.items():
            try:
                self._unregister(f"{self.prefix}_{name}")
            finally:
                self.shm.destroy_shared_memory_region(handle)

    def _unregister(self, region: str) -> None:
        """Unregister ``region``, waiting up to 2 s while the server still holds it (it can
        release the last request's input region just after the response arrives)."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + 2.0
        while True:
            try:
                self.client.unregister_system_shared_memory(region)
                return
            except InferenceServerException as error:
                if "in use" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.client.close()


def model_stats(url: str, models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Cumulative Triton statistics per model: request count and nanoseconds per phase."""
    import tritonclient.grpc as grpcclient

    phases = ("queue", "compute_input", "compute_infer", "compute_output")
    found: dict[str, dict[str, float]] = {}
    with grpcclient.InferenceServerClient(url) as client:
        for model in models:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
            inference = stats.get("inference_stats", {})
            entry = {"count": float(inference.get("success", {}).get("count", 0))}
            entry.update({p: float(inference.get(p, {}).get("ns", 0)) for p in phases})
            found[model] = entry
    return found


def stats_summary(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    """Average milliseconds per request between two :func:`model_stats` snapshots."""
    parts = []
    for model, end in after.items():
        count = end["count"] - before[model]["count"]
        if count <= 0:
            continue

        def ms(phase: str, model: str = model, count: float = count) -> float:
            return (after[model][phase] - before[model][phase]) / count / 1e6

        parts.append(
            f"{model} q {ms('queue'):.1f} in {ms('compute_input'):.1f} "
            f"run {ms('compute_infer'):.1f} out {ms('compute_output'):.1f}"
        )
    return "; ".join(parts)


# --------------------------------------------------------------------------- CPU per process


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def triton_processes(server_pid: int) -> dict[str, int]:
    """The server and its Python-backend stubs by name (``cxr_net``, ...) -> pid."""
    found = {"tritonserver": server_pid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != server_pid:
            continue
        model = next(
            (Path(part.decode()).parent.parent.name for part in command if part.endswith(b".py")),
            entry.name,
        )
        name = model if model not in found else f"{model} ({entry.name})"
        found[name] = int(entry.name)
    return found


def cpu_per_request(
    processes: dict[str, int], measure: Callable[[], float], requests: int
) -> tuple[float, dict[str, float]]:
    """``measure()``'s result and each process's CPU milliseconds per request during it."""
    before = {name: process_cpu_seconds(pid) for name, pid in processes.items()}
    result = measure()
    after = {name: process_cpu_seconds(pid) for name, pid in processes.items()}
    return result, {name: 1e3 * (after[name] - before[name]) / requests for name in processes}


def cpu_summary(samples: list[dict[str, float]], rate: float) -> str:
    """Mean CPU ms per request per process, their sum and what the sum allows on this host."""
    names = list(samples[0])
    mean = {name: statistics.fmean(s[name] for s in samples) for name in names}
    total = sum(mean.values())
    cores = os.cpu_count() or 1
    parts = [f"{name} {value:.1f}" for name, value in mean.items()]
    return (
        f"{', '.join(parts)}; sum {total:.1f} ms -> at most {1e3 * cores / total:.1f} req/s "
        f"on {cores} cores (measured {rate:.1f})"
    )


# --------------------------------------------------------------------------- perf_analyzer


def find_perf_analyzer(explicit: str | None) -> Path | None:
    """``--perf-analyzer``, else ``$PERF_ANALYZER``, else ``perf_analyzer`` on PATH; or None."""
    candidates = [
        explicit,
        os.environ.get("PERF_ANALYZER"),
        shutil.which("perf_analyzer"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def perf_analyzer_env(scratch: Path) -> dict[str, str]:
    """Environment whose LD_LIBRARY_PATH resolves libb64.so.0d and libcudart.so.12.

    The wheel's ``nvidia_pytriton.libs`` holds them under auditwheel's hashed names, so
    they are linked under their plain names in ``scratch``.
    """
    from control.triton.server import find_triton_install

    libs = find_triton_install().libs
    linked = scratch / "perf_analyzer_libs"
    linked.mkdir(exist_ok=True)
    for plain, pattern in (
        ("libb64.so.0d", "libb64-*.so.0d"),
        ("libcudart.so.12", "libcudart-*.so.12*"),
    ):
        found = sorted(libs.glob(pattern))
        if found and not (linked / plain).exists():
            (linked / plain).symlink_to(found[0])
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(linked), str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def perf_analyzer_input(scratch: Path, pixels: np.ndarray) -> Path:
    """perf_analyzer ``--input-data`` JSON: the benchmark image (base64) and INVERT false."""
    path = scratch / "cxr_input.json"
    data = {
        "data": [
            {
                "PIXELS": {
                    "b64": base64.b64encode(pixels.astype("<u2").tobytes()).decode(),
                    "shape": list(pixels.shape),
                },
                "INVERT": {"content": [False], "shape": [1]},
            }
        ]
    }
    path.write_text(json.dumps(data))
    return path


def run_perf_analyzer(
    binary: Path, url: str, input_json: Path, concurrency: int, env: dict[str, str],
    output_bytes: int,
) -> list[str]:  # fmt: skip
    """perf_analyzer's throughput and latency lines for ``cxr`` at ``concurrency``."""
    command = [
        str(binary), "-m", "cxr", "-u", url, "-i", "grpc",
        "--input-data", str(input_json), "--shared-memory", "system",
        f"--output-shared-memory-size={output_bytes}",
        f"--concurrency-range={concurrency}", f"--request-count={max(16, 4 * concurrency)}",
        "--percentile=95",
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603 (the binary the user pointed at)
        command, env=env, capture_output=True, text=True, timeout=240
    )
    text = done.stdout + done.stderr
    if done.returncode != 0:
        return [f"perf_analyzer failed ({done.returncode}): {text.strip()[-600:]}"]
    wanted = re.compile(r"(Throughput:|p50 latency|p95 latency|Avg latency|Concurrency: \d+,)")
    lines = [line.strip() for line in text.splitlines() if wanted.search(line)]
    return lines[-5:] or [text.strip()[-600:]]


# --------------------------------------------------------------------------- main


@dataclass
class Figures:
    """Everything printed in the summary block."""

    lines: list[str]

    def add(self, label: str, value: str) -> None:
        self.lines.append(f"{label:<46} {value}")


def set_instance_count(repository: Path, model: str, count: int) -> None:
    """Set the ``instance_group`` count of ``model`` in this (temporary) repository."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    path = repository / model / "config.pbtxt"
    config = text_format.Parse(path.read_text(), pb.ModelConfig())
    for group in config.instance_group:
        group.count = count
    path.write_text(text_format.MessageToString(config))


def main() -> None:
    # The in-process pipeline runs numpy with the one OpenBLAS thread the served Python
    # models get (control/triton/server.py server_environment): same settings on both sides.
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ.get("OPENBLAS_NUM_THREADS", "1")), user_api="blas")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("densenet121", "demo", "tiny"), default="densenet121")
    parser.add_argument(
        "--reps", type=int, default=30, help="latency repetitions (after 3 warm-up)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=80, help="requests in the throughput run")
    parser.add_argument("--perf-analyzer", default=None, help="path to the perf_analyzer binary")
    parser.add_argument("--skip-perf-analyzer", action="store_true")
    parser.add_argument(
        "--postprocess-instances", type=int, default=0,
        help="override cxr_postprocess instance count in the temporary repository (a what-if)",
    )  # fmt: skip
    parser.add_argument(
        "--net-instances", type=int, default=0,
        help="override cxr_net instance count in the temporary repository (a what-if)",
    )  # fmt: skip
    parser.add_argument(
        "--net-intra-op", type=int, default=0,
        help="override cxr_net onnxruntime intra-op threads (a what-if)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="throughput rounds; each runs every in-process and Triton variant once",
    )  # fmt: skip
    parser.add_argument(
        "--cam-max-side", type=int, default=0,
        help="override cxr_postprocess cam_max_side (a what-if; the image side, 1024, "
        "gives the CAM of the contract before issue 14: 14 maps at the full image size)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="5 latency repetitions, 16 requests, no perf_analyzer: a check, not the figures",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.reps, args.requests, args.rounds, args.skip_perf_analyzer = 5, 16, 1, True

    from control.triton.server import TritonServer, free_triton_ports
    from export.triton_config import update_config_parameters

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    figures = Figures([])
    with tempfile.TemporaryDirectory(prefix="medvision-bench-") as tmp:
        scratch = Path(tmp)
        print(f"exporting {args.model} (random weights) ...", flush=True)
        repository = build_repository(scratch, args.model)
        if args.postprocess_instances:
            set_instance_count(repository, "cxr_postprocess", args.postprocess_instances)
        if args.net_instances:
            set_instance_count(repository, "cxr_net", args.net_instances)
        if args.cam_max_side:
            update_config_parameters(
                repository / "cxr_postprocess" / "config.pbtxt",
                {"cam_max_side": str(args.cam_max_side)},
            )
        if args.net_intra_op:
            update_config_parameters(
                repository / "cxr_net" / "config.pbtxt",
                {"intra_op_num_threads": str(args.net_intra_op)},
            )
        intra_op = int(model_parameters(repository, "cxr_net").get("intra_op_num_threads") or "0")
        pixels = chest_sized_image()
        # a repository from before issue 14 has no cam_max_side: its CAM has the image's size
        cam_max_side = int(
            model_parameters(repository, "cxr_postprocess").get("cam_max_side", max(pixels.shape))
        )
        output_bytes = _output_bytes(pixels, cam_max_side)
        onnx_path = repository / "cxr_net" / "1" / "model.onnx"
        session = runner_session(onnx_path, intra_op)
        pipeline = in_process_pipeline(repository, session)
        stages = stage_times(repository, session, pixels, max(5, args.reps // 3))

        ports = free_triton_ports()
        print("starting Triton ...", flush=True)
        with TritonServer(repository, **ports, cache_dir=scratch / "triton") as server:
            url = server.url_grpc
            print("latency (interleaved) ...", flush=True)
            before = model_stats(url, ("cxr", *CXR_MODELS[1:], "cxr_net"))
            latency = asyncio.run(
                interleaved_latency_ms(url, pipeline, pixels, args.reps, output_bytes)
            )
            breakdown = stats_summary(before, model_stats(url, tuple(before)))

            print("throughput ...", flush=True)
            n_local = max(8, args.requests // 2 // args.rounds)
            n_triton = max(8, args.requests // args.rounds)
            single_thread = in_process_pipeline(repository, runner_session(onnx_path, 1))
            variants: dict[str, Callable[[], float]] = {
                "1 thread": lambda: in_process_throughput(pipeline, pixels, 1, n_local),
                "2 threads": lambda: in_process_throughput(pipeline, pixels, 2, n_local),
                "2 threads, intra_op 1": lambda: in_process_throughput(
                    single_thread, pixels, 2, n_local
                ),
                "triton": lambda: asyncio.run(
                    triton_throughput(
                        url, pixels, args.clients, n_triton, output_bytes, shared_client=False
                    )
                ),
                "triton, one client": lambda: asyncio.run(
                    triton_throughput(
                        url, pixels, args.clients, n_triton, output_bytes, shared_client=True
                    )
                ),
            }
            processes = {"client (this process)": os.getpid()}
            assert server.pid is not None
            processes.update(triton_processes(server.pid))
            cpu: dict[str, list[dict[str, float]]] = {"triton": [], "in-process": []}

            def with_cpu(kind: str, measure: Callable[[], float], n: int) -> Callable[[], float]:
                def measured() -> float:
                    watched = processes if kind == "triton" else {"in-process": os.getpid()}
                    result, used = cpu_per_request(watched, measure, n)
                    cpu[kind].append(used)
                    return result

                return measured

            # the warm-up requests (one per client, two per thread) are counted too
            variants["triton"] = with_cpu("triton", variants["triton"], n_triton + args.clients)
            variants["2 threads"] = with_cpu("in-process", variants["2 threads"], n_local + 4)
            rates = interleaved_rates(variants, args.rounds)
            rate, shared_rate = rates.pop("triton"), rates.pop("triton, one client")
            local_rates = rates
            best_local = max(local_rates, key=local_rates.__getitem__)

            perf_lines: list[str] = []
            binary = find_perf_analyzer(args.perf_analyzer)
            if args.skip_perf_analyzer:
                perf_lines.append("skipped (--skip-perf-analyzer)")
            elif binary is None:
                print(PERF_ANALYZER_HELP, flush=True)
                perf_lines.append("not found (see the instructions above)")
            else:
                print("perf_analyzer ...", flush=True)
                input_json = perf_analyzer_input(scratch, pixels)
                env = perf_analyzer_env(scratch)
                for concurrency in (1, args.clients):
                    found = run_perf_analyzer(
                        binary, url, input_json, concurrency, env, output_bytes["CAM"]
                    )
                    perf_lines += [f"c={concurrency}: {line}" for line in found]

    local_ms = latency["in-process"]
    figures.add("machine", describe())
    figures.add(
        "load average (1 min) before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    )
    figures.add("network", f"{args.model} (random weights), input {SIZE}², python-onnx, "
                f"intra_op_num_threads={intra_op or 'default'}")  # fmt: skip
    if args.postprocess_instances:
        figures.add("what-if", f"cxr_postprocess instance count {args.postprocess_instances}")
    if args.net_instances:
        figures.add("what-if", f"cxr_net instance count {args.net_instances}")
    figures.add("image", f"{IMAGE_SIDE}x{IMAGE_SIDE} UINT16 (CT_small.dcm upscaled), MONOCHROME2")
    figures.add("CAM output", f"14 maps, longer side {cam_max_side}: {output_bytes['CAM']:,} bytes")
    figures.add("in-process stages (median ms)",
                ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))  # fmt: skip
    figures.add(f"latency, median of {args.reps} interleaved (ms)",
                ", ".join(f"{k} {v:.1f}" for k, v in latency.items()))  # fmt: skip
    figures.add("Triton per-model avg (ms, shm run)", breakdown)
    overhead = latency["shm"] / local_ms
    figures.add("ensemble overhead, TritonClient shm (goal <= 1.15)", f"{overhead:.2f}")
    figures.add("ensemble overhead, no shm", f"{latency['no shm'] / local_ms:.2f}")
    figures.add("ensemble overhead, input+output shm", f"{latency['in+out shm'] / local_ms:.2f}")
    figures.add("in-process throughput (req/s)",
                ", ".join(f"{k}: {v:.2f}" for k, v in local_rates.items()))  # fmt: skip
    figures.add(f"Triton throughput, {args.clients} clients (req/s)",
                f"{rate:.2f} (a TritonClient each), {shared_rate:.2f} (one shared)")  # fmt: skip
    ratio = rate / local_rates[best_local]
    figures.add("throughput ratio (goal >= 0.95)", f"{ratio:.2f} vs in-process {best_local}")
    figures.add("CPU ms per request, Triton 8 clients", cpu_summary(cpu["triton"], rate))
    figures.add(
        "CPU ms per request, in-process 2 threads",
        cpu_summary(cpu["in-process"], local_rates["2 threads"]),
    )
    for line in perf_lines:
        figures.add("perf_analyzer (system shm in+out)", line)
    figures.add("benchmark wall time", f"{time.perf_counter() - started:.0f} s")
    print("\n```\n" + "\n".join(figures.lines) + "\n```")


if __name__ == "__main__":
    main()
