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
