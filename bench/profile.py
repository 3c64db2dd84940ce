"""py-spy profiles of a benchmark's server: sampling a process, and the top entries."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sampled(pid: int, out: Path | None, *, subprocesses: bool = False) -> Iterator[None]:
    """Run ``py-spy record`` on ``pid`` (and its child processes with ``subprocesses``) for
    the duration of the block (nothing when ``out`` is None); stopped with SIGINT so that it
    writes ``out``."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("profiling needs py-spy on the PATH (pip install py-spy)")
    sampler = subprocess.Popen(  # noqa: S603 (py-spy, our own arguments)
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "-o", str(out)]
        + (["--subprocesses"] if subprocesses else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(timeout=60)


#: Leaf frames of threads waiting for work (the event loop's poll, idle worker threads):
#: py-spy counts them as active, they are not the ingest's cost.
IDLE_LEAVES = (
    "Runner.run (",
    "Condition.wait (",
    "Queue.get (",
    "_worker (concurrent/futures/thread.py)",
    "_connection_worker_thread (",
)


def top_frames(raw: Path, count: int = 20) -> tuple[int, list[tuple[str, int, int]]]:
    """Busy samples and the ``count`` functions with the most of them in py-spy's collapsed
    stacks (``--format raw``): ``(function (file), inclusive, self)``, inclusive first.
    Samples of idle threads (:data:`IDLE_LEAVES`) are left out."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if frames[-1].startswith(IDLE_LEAVES) or _short(frames[-1]).startswith(IDLE_LEAVES):
            continue
        samples = int(number)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    ranked = sorted(inclusive, key=lambda frame: (-inclusive[frame], frame))[:count]
    return total, [(frame, inclusive[frame], own[frame]) for frame in ranked]


def print_profile(raw: Path, count: int = 25, what: str = "medvision serve") -> None:
    """The top entries of a py-spy profile of ``what``, by inclusive and by own samples."""
    total, top = top_frames(raw, count)
    print(f"\nprofile of {what} ({total} busy samples, py-spy, every thread): {raw}")
    print(f"{'incl %':>7}{'self %':>7}  function (file)")
    for frame, inclusive, own in top:
        print(f"{100 * inclusive / total:>7.1f}{100 * own / total:>7.1f}  {_short(frame)}")
    _, by_self = top_frames(raw, 10_000)
    print(f"\n{'self %':>7}  function (file), by own samples")
    for frame, _inclusive, own in sorted(by_self, key=lambda row: -row[2])[:15]:
        print(f"{100 * own / total:>7.1f}  {_short(frame)}")


def _short(frame: str) -> str:
    return re.sub(r"\(/\S*?/(site-packages|lib/python3\.\d+|main|mv-before)/", "(", frame)
