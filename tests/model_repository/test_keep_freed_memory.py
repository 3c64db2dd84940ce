"""``medvision_contract.triton.keep_freed_memory``: the numpy temporaries of a Python model
stop faulting their pages in again on every request (counted in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

WORKLOAD = """
import resource, sys
import numpy as np
from medvision_contract.preprocess import resize_with_padding, xray_to_float
from medvision_contract.triton import keep_freed_memory

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
pixels = np.random.default_rng(0).integers(0, 4096, (1024, 1024), dtype=np.uint16)

def request():
    unit = xray_to_float(pixels, photometric="MONOCHROME2", bits_stored=12)
    resize_with_padding(unit, 224)

for _ in range(5):
    request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    request()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, check=True
    )
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_not_faulted_in_again_per_request() -> None:
    kept, with_kept = _page_faults("keep")
    _, by_default = _page_faults("default")
    assert kept == "True"
    assert by_default > 1000  # 10 requests of 1024² float32 temporaries, mapped afresh
    assert with_kept < by_default / 10
