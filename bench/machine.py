"""What machine a benchmark ran on, printed with its figures."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """CPU model, core count, memory and the torch build, on one line."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    try:
        import torch

        torch_info = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_info = ""
    return f"{model}, {os.cpu_count()} cores{memory}{torch_info}"


def describe_gpu() -> str:
    """The CUDA GPU torch sees (name, memory, compute capability), its driver and CUDA/cuDNN.

    ``"no CUDA GPU visible to torch"`` when there is none. The driver version comes from
    ``nvidia-smi`` when it is on the PATH.
    """
    import shutil
    import subprocess

    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    props = torch.cuda.get_device_properties(0)
    driver = "driver unknown"
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"]
        found = subprocess.run(query, capture_output=True, text=True, check=False)  # noqa: S603
        if found.returncode == 0 and found.stdout.strip():
            driver = f"driver {found.stdout.strip()}"
    cudnn = torch.backends.cudnn.version()
    return (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute capability "
        f"{props.major}.{props.minor}, {props.multi_processor_count} SMs), {driver}, "
        f"CUDA {torch.version.cuda}, cuDNN {cudnn}, torch {torch.__version__}"
    )
