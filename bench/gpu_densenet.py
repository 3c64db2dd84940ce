"""DenseNet-121 (the CXR network) inference at batch 64 on a CUDA GPU: eager, mixed precision,
channels_last, CUDA graphs, torch.compile and, where installed, TensorRT.

    python -m bench.gpu_densenet [--batch 64] [--reps 50] [--out FILE.json]
    python -m bench.gpu_densenet --quick --device cpu [--preset tiny]   # a check of the script

The network is the served one: ``build_cxr_net("densenet121")`` (MONAI DenseNet-121 with
CBAM, one input channel, 14 labels) wrapped as export's ``CamWrapper`` (logits and CAMs
from one pass), at 224² with random weights whose batch-norm statistics are first set from
a few random batches (timing does not depend on the weights; the statistics keep FP16
activations in range so the accuracy column means something).

Each variant reports the median (and p90) latency of one batch over ``--reps`` timed calls
after warm-up (CUDA events around each call on a GPU, ``perf_counter`` on the CPU),
images/s (batch / median), its ratio to eager FP32 with PyTorch's defaults, set-up time
(compilation, graph capture) and the largest absolute difference of its logits and CAMs
from FP32 with TF32 off. Then: the project's ONNX export (``export.onnx_export``) of the
network, its parity check (``export.parity``), onnxruntime on every execution provider it
has (CPU always; CUDA / TensorRT only with ``onnxruntime-gpu``), and the TensorRT FP16 plan
(``export.onnx_export.build_tensorrt_plan``) when ``tensorrt`` imports, else the reason it
does not run. The issue's goal: TensorRT FP16 at least 5x eager FP32 at batch 64.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.machine import describe, describe_gpu
from training.labels import CXR_LABELS
from training.networks.cxr import CamWrapper, build_cxr_net

SIZE = 224
GOAL_RATIO = 5.0
Outputs = tuple[torch.Tensor, torch.Tensor]
Runner = Callable[[], Outputs]


@dataclass
class Result:
    """One variant's figures (``None`` where it did not run, with ``note`` saying why)."""

    name: str
    median_ms: float | None = None
    p90_ms: float | None = None
    images_per_s: float | None = None
    ratio_vs_eager_fp32: float | None = None
    setup_s: float | None = None
    max_abs_diff_logits: float | None = None
    max_abs_diff_cams: float | None = None
    note: str = ""


@dataclass
class Report:
    """Everything the run found, written as JSON after each step (a cut-short run keeps it)."""

    machine: str
    gpu: str
    settings: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    onnx: dict[str, Any] = field(default_factory=dict)
    tensorrt: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def save(self, path: Path | None) -> None:
        """Write the report to ``path`` (no-op without one)."""
        if path is not None:
            path.write_text(json.dumps(asdict(self), indent=2))


@dataclass(frozen=True)
class Variant:
    """How to run the network: ``prepare`` returns a zero-argument call of one batch."""

    name: str
    prepare: Callable[[nn.Module, torch.Tensor], Runner]
    tf32: bool = True
    cudnn_benchmark: bool = False
    cuda_only: bool = False
    baseline: bool = False  # eager FP32 with PyTorch's defaults: the ratio's denominator


# --------------------------------------------------------------------------- network


def build_network(preset: str, batch: int, device: torch.device, seed: int = 0) -> nn.Module:
    """The served CXR module (logits, CAMs) in eval mode on ``device``, BN statistics set."""
    torch.manual_seed(seed)
    module = CamWrapper(build_cxr_net(preset)).to(device)  # type: ignore[arg-type]
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(max(batch, 2), 1, SIZE, SIZE, device=device))
    return module.eval()


# --------------------------------------------------------------------------- variants


def _eager(module: nn.Module, x: torch.Tensor) -> Runner:
    return lambda: module(x)


def _autocast(dtype: torch.dtype, channels_last: bool = False) -> Callable[..., Runner]:
    def prepare(module: nn.Module, x: torch.Tensor) -> Runner:
        if channels_last:
            module = copy.deepcopy(module).to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def run() -> Outputs:
            with torch.autocast(x.device.type, dtype=dtype):
                return module(x)  # type: ignore[no-any-return]

        return run

    return prepare


def _half_channels_last(module: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    half = copy.deepcopy(module).half().to(memory_format=torch.channels_last)
    return half, x.half().contiguous(memory_format=torch.channels_last)


def _fp16_channels_last(module: nn.Module, x: torch.Tensor) -> Runner:
    half, xh = _half_channels_last(module, x)
    return lambda: half(xh)


def _fp32_channels_last(module: nn.Module, x: torch.Tensor) -> Runner:
    last = copy.deepcopy(module).to(memory_format=torch.channels_last)
    xl = x.contiguous(memory_format=torch.channels_last)
    return lambda: last(xl)


def _cuda_graph(half: bool) -> Callable[..., Runner]:
    def prepare(module: nn.Module, x: torch.Tensor) -> Runner:
        if half:
            module, x = _half_channels_last(module, x)
        static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # cuDNN picks its algorithms before the capture
                module(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = module(static_x)

        def run() -> Outputs:
            graph.replay()
            return static_out  # type: ignore[no-any-return]

        return run

    return prepare


def _compiled(mode: str) -> Callable[..., Runner]:
    def prepare(module: nn.Module, x: torch.Tensor) -> Runner:
        torch._dynamo.reset()  # a fresh compile per mode (Inductor's on-disk cache stays)
        half, xh = _half_channels_last(module, x)
        compiled = torch.compile(half, mode=mode)

        def run() -> Outputs:
            out = compiled(xh)
            # reduce-overhead replays CUDA graphs into the same buffers: copy out first
            return (out[0].clone(), out[1].clone()) if mode == "reduce-overhead" else out

        return run

    return prepare


VARIANTS = (
    Variant("eager FP32 (PyTorch defaults)", _eager, baseline=True),
    Variant("eager FP32, TF32 off", _eager, tf32=False),
    Variant("eager FP32, channels_last, cudnn.benchmark", _fp32_channels_last,
            cudnn_benchmark=True),
    Variant("eager FP16 autocast", _autocast(torch.float16)),
    Variant("eager BF16 autocast", _autocast(torch.bfloat16)),
    Variant("eager FP16 autocast, channels_last, cudnn.benchmark",
            _autocast(torch.float16, channels_last=True), cudnn_benchmark=True),
    Variant("eager FP16 weights, channels_last, cudnn.benchmark", _fp16_channels_last,
            cudnn_benchmark=True),
    Variant("CUDA graph, FP32 (PyTorch defaults)", _cuda_graph(half=False), cuda_only=True),
    Variant("CUDA graph, FP16 weights, channels_last", _cuda_graph(half=True),
            cudnn_benchmark=True, cuda_only=True),
    Variant("torch.compile default, FP16 weights, channels_last", _compiled("default"),
            cudnn_benchmark=True),
    Variant("torch.compile reduce-overhead (CUDA graphs), FP16, channels_last",
            _compiled("reduce-overhead"), cudnn_benchmark=True),
    # the baseline again, last: order effects (clocks, caches) show as a difference
    Variant("eager FP32 (PyTorch defaults), again at the end", _eager, baseline=True),
)  # fmt: skip


@contextlib.contextmanager
def backend_flags(tf32: bool, cudnn_benchmark: bool) -> Iterator[None]:
    """cuDNN/matmul TF32 and ``cudnn.benchmark`` set for one variant, restored afterwards."""
    saved = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32 and saved[1]
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        (
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = saved


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(run: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> list[float]:
    """Milliseconds of each of ``reps`` calls of ``run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    synchronize(device)
    if device.type != "cuda":
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1e3)
        return times
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(reps)
    ]
    for start, end in events:
        start.record()
        run()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def measure(
    variant: Variant,
    module: nn.Module,
    x: torch.Tensor,
    reference: Outputs,
    warmup: int,
    reps: int,
) -> Result:
    """Set ``variant`` up (timed, first call included), time it and compare its outputs."""
    with torch.no_grad(), backend_flags(variant.tf32, variant.cudnn_benchmark):
        started = time.perf_counter()
        run = variant.prepare(module, x)
        logits, cams = run()
        synchronize(x.device)
        setup_s = time.perf_counter() - started
        diff_logits = float((logits.float() - reference[0]).abs().max())
        diff_cams = float((cams.float() - reference[1]).abs().max())
        times = time_calls(run, x.device, warmup, reps)
    median = statistics.median(times)
    return Result(
        name=variant.name,
        median_ms=round(median, 3),
        p90_ms=round(percentile(times, 90), 3),
        images_per_s=round(x.shape[0] / median * 1e3, 1),
        setup_s=round(setup_s, 2),
        max_abs_diff_logits=float(f"{diff_logits:.3g}"),
        max_abs_diff_cams=float(f"{diff_cams:.3g}"),
    )


# --------------------------------------------------------------------------- ONNX, TensorRT


def onnx_section(
    module: nn.Module, preset: str, batch: int, reps: int, out: dict[str, Any]
) -> None:
    """Export with the project's exporter, check parity, time onnxruntime's providers."""
    try:
        from export.onnx_export import export_onnx
        from export.parity import check_parity
    except (ImportError, RuntimeError) as error:  # tritonclient raises RuntimeError
        out["export"] = f"not run: the project's exporter does not import ({error})"
        return
    import onnxruntime as ort

    meta = {"labels": list(CXR_LABELS), "preset": preset, "input_size": SIZE}
    cpu_module = copy.deepcopy(module).float().cpu().eval()
    with tempfile.TemporaryDirectory(prefix="medvision-gpu-bench-") as tmp:
        path = Path(tmp) / "model.onnx"
        started = time.perf_counter()
        export_onnx(cpu_module, "cxr", meta, path)
        out["export_s"] = round(time.perf_counter() - started, 2)
        out["onnx_mb"] = round(path.stat().st_size / 2**20, 1)
        try:
            out["parity"] = check_parity(cpu_module, "cxr", path, meta).summary()
        except Exception as error:  # a failed parity is a figure here, not a crash
            out["parity"] = f"FAILED: {error}"
        out["onnxruntime"] = ort.__version__
        available = ort.get_available_providers()
        out["providers_available"] = available
        batch_x = np.random.default_rng(0).standard_normal((batch, 1, SIZE, SIZE))
        feed = {"IMAGE": batch_x.astype(np.float32)}
        timings: dict[str, str] = {}
        for provider in (
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ):
            if provider not in available:
                timings[provider] = "not available (onnxruntime here is the CPU build)"
                continue
            try:
                session = ort.InferenceSession(str(path), providers=[provider])
                # CPU: few reps, it is a reference point, not the figure of interest
                n = reps if provider != "CPUExecutionProvider" else max(2, min(reps, 3))
                times = time_calls(lambda s=session: s.run(None, feed), torch.device("cpu"), 1, n)
                median = statistics.median(times)
                timings[provider] = (
                    f"{median:.1f} ms per batch of {batch} ({batch / median * 1e3:.0f} images/s,"
                    f" median of {n})"
                )
            except Exception as error:  # report the provider's failure, go on with the next
                timings[provider] = f"failed: {error}"
        out["timings"] = timings


def tensorrt_section(
    module: nn.Module, preset: str, batch: int, reps: int, out: dict[str, Any]
) -> None:
    """Build the project's FP16 TensorRT plan and time it, or record why that cannot run."""
    try:
        from export.onnx_export import build_tensorrt_plan, export_onnx, tensorrt_available
    except (ImportError, RuntimeError) as error:  # tritonclient raises RuntimeError
        out["status"] = f"not run: export.onnx_export does not import ({error})"
        return
    reason = tensorrt_available()
    if reason is not None:
        out["status"] = f"not available on this machine ({reason})"
        return
    import tensorrt as trt

    meta = {"labels": list(CXR_LABELS), "preset": preset, "input_size": SIZE}
    with tempfile.TemporaryDirectory(prefix="medvision-trt-") as tmp:
        onnx_path = export_onnx(
            copy.deepcopy(module).float().cpu(), "cxr", meta, Path(tmp) / "m.onnx"
        )
        started = time.perf_counter()
        plan = build_tensorrt_plan(onnx_path, Path(tmp) / "model.plan", "cxr", meta,
                                   max_batch_size=batch)  # fmt: skip
        out["build_s"] = round(time.perf_counter() - started, 1)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            plan.read_bytes()
        )
    context = engine.create_execution_context()
    device = torch.device("cuda")
    buffers: dict[str, torch.Tensor] = {}
    context.set_input_shape("IMAGE", (batch, 1, SIZE, SIZE))
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = tuple(context.get_tensor_shape(name))
        dtype = (
            torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
        )
        buffers[name] = torch.randn(shape, device=device).to(dtype)
        context.set_tensor_address(name, buffers[name].data_ptr())
    stream = torch.cuda.current_stream()
    times = time_calls(lambda: context.execute_async_v3(stream.cuda_stream), device, 10, reps)
    median = statistics.median(times)
    out["status"] = "ran"
    out["tensorrt"] = trt.__version__
    out["median_ms"] = round(median, 3)
    out["images_per_s"] = round(batch / median * 1e3, 1)


# --------------------------------------------------------------------------- main


def print_table(report: Report) -> None:
    """The variants as an aligned text table."""
    print(f"\n{'variant':<68} {'median ms':>9} {'p90 ms':>8} {'img/s':>9} {'x FP32':>7} "
          f"{'setup s':>8} {'|dlogit|':>9} {'|dcam|':>9}")  # fmt: skip
    for r in report.results:
        if r.median_ms is None:
            print(f"{r.name:<68} {r.note}")
            continue
        print(f"{r.name:<68} {r.median_ms:>9.2f} {r.p90_ms:>8.2f} {r.images_per_s:>9.0f} "
              f"{r.ratio_vs_eager_fp32 or 0:>7.2f} {r.setup_s:>8.1f} "
              f"{r.max_abs_diff_logits:>9.2g} {r.max_abs_diff_cams:>9.2g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=("densenet121", "demo", "tiny"), default="densenet121")
    parser.add_argument("--batch", type=int, default=None, help="default 64 (2 with --quick)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls (default 50; 3 quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls (10; 1 quick)")
    parser.add_argument("--quick", action="store_true", help="tiny batch and reps: a script check")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile variants")
    parser.add_argument("--skip-onnx", action="store_true", help="no ONNX export / onnxruntime")
    parser.add_argument(
        "--budget-s", type=float, default=300.0,
        help="skip the remaining variants once this much wall time has passed",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    batch = args.batch or (2 if args.quick else 64)
    reps = args.reps or (3 if args.quick else 50)
    warmup = args.warmup or (1 if args.quick else 10)
    device = torch.device(args.device)

    started = time.perf_counter()
    report = Report(
        machine=describe(),
        gpu=describe_gpu(),
        settings={
            "network": f"CamWrapper(build_cxr_net({args.preset!r})): MONAI DenseNet, CBAM, "
            f"1 channel, {len(CXR_LABELS)} labels, logits + CAMs",
            "input": f"[{batch}, 1, {SIZE}, {SIZE}] float32, random normal",
            "device": str(device),
            "reps": reps,
            "warmup": warmup,
            "default cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "default matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
    )
    print(f"machine: {report.machine}\ngpu: {report.gpu}", flush=True)
    for key, value in report.settings.items():
        print(f"{key}: {value}", flush=True)

    module = build_network(args.preset, batch, device)
    x = torch.randn(batch, 1, SIZE, SIZE, device=device)
    with torch.no_grad(), backend_flags(tf32=False, cudnn_benchmark=False):
        reference = tuple(t.float().clone() for t in module(x))
        time_calls(lambda: module(x), device, 2 * warmup, 0)  # clocks up before the first figure
    for variant in VARIANTS:
        if variant.cuda_only and device.type != "cuda":
            result = Result(variant.name, note="skipped: needs a CUDA device")
        elif args.skip_compile and "compile" in variant.name:
            result = Result(variant.name, note="skipped: --skip-compile")
        elif time.perf_counter() - started > args.budget_s:
            result = Result(variant.name, note=f"skipped: past the {args.budget_s:.0f} s budget")
        else:
            print(f"{variant.name} ...", flush=True)
            try:
                result = measure(variant, module, x, reference, warmup, reps)  # type: ignore[arg-type]
            except Exception as error:  # one variant's failure is a figure, not the end
                result = Result(variant.name, note=f"failed: {type(error).__name__}: {error}")
        print(f"  {result}", flush=True)
        report.results.append(result)
        report.save(args.out)
    # the faster of the two baseline runs, so that no ratio is flattered by a slow first run
    baseline = max(
        (
            r.images_per_s or 0.0
            for r, v in zip(report.results, VARIANTS, strict=True)
            if v.baseline
        ),
        default=0.0,
    )
    for result in report.results:
        if result.images_per_s is not None and baseline:
            result.ratio_vs_eager_fp32 = round(result.images_per_s / baseline, 2)
    report.settings["baseline images/s (faster eager FP32 defaults run)"] = baseline

    if not args.skip_onnx:
        print("ONNX export, parity, onnxruntime ...", flush=True)
        try:
            onnx_section(module, args.preset, batch, reps, report.onnx)
        except Exception as error:
            report.onnx["error"] = f"{type(error).__name__}: {error}"
        print(f"  {report.onnx}", flush=True)
        report.save(args.out)
    print("TensorRT ...", flush=True)
    try:
        tensorrt_section(module, args.preset, batch, reps, report.tensorrt)
    except Exception as error:
        report.tensorrt["status"] = f"failed: {type(error).__name__}: {error}"
    if "images_per_s" in report.tensorrt and baseline:
        ratio = report.tensorrt["images_per_s"] / baseline
        report.tensorrt["ratio_vs_eager_fp32"] = round(ratio, 2)
        report.tensorrt["goal"] = f"{ratio:.2f}x vs goal >= {GOAL_RATIO:.0f}x"
    print(f"TensorRT: {report.tensorrt}", flush=True)

    report.wall_s = round(time.perf_counter() - started, 1)
    report.save(args.out)
    print_table(report)
    print(f"\nbenchmark wall time: {report.wall_s:.0f} s")


if __name__ == "__main__":
    main()
