"""CPU training throughput: chest X-ray images/s at 224², segmentation volumes/s at 96³
crops, and the fraction of each step spent waiting for data.

    .venv/bin/python -m bench.train_throughput [--steps 10] [--workers 0] [--quick]

``--quick`` (2 steps on a smaller synthetic set, under a minute) checks a change; the README's
figures come from the full mode.

Uses synthetic data from ``medvision data synth`` (written to a temporary folder) and the
same datasets, transforms, models and losses as ``medvision train``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from monai.data.utils import worker_init_fn
from torch.utils.data import DataLoader

from bench.machine import describe


def measure(task: Any, batch_size: int, steps: int, workers: int) -> tuple[float, float]:
    """(samples per second, fraction of step time waiting for data) over ``steps`` steps."""
    model = task.build_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(
        task.train_dataset(), batch_size=batch_size, shuffle=True, num_workers=workers,
        worker_init_fn=worker_init_fn, drop_last=True, persistent_workers=workers > 0,
    )  # fmt: skip
    batches = _forever(lambda: iter(loader))
    for _ in range(2):  # warm-up
        _step(task, model, optimizer, next(batches))
    waited, started = 0.0, time.perf_counter()
    for _ in range(steps):
        fetch = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - fetch
        _step(task, model, optimizer, batch)
    elapsed = time.perf_counter() - started
    return steps * batch_size / elapsed, waited / elapsed


def _forever(make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    while True:
        yield from make()


def _step(task: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = task.compute_loss(model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cxr-batch", type=int, default=16)
    parser.add_argument("--brats-batch", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 steps, smaller synthetic set")
    args = parser.parse_args()
    if args.quick:
        args.steps = 2
    images, cases = (2 * args.cxr_batch, 2) if args.quick else (160, 12)

    from training.data.synth import BratsSynthConfig, CxrSynthConfig, synth_brats, synth_cxr
    from training.tasks.brats import BratsTask, BratsTaskConfig
    from training.tasks.cxr import CxrTask, CxrTaskConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("MEDVISION_DATA_DIR", str(root / "var"))
        synth_cxr(root / "cxr", CxrSynthConfig(n_images=images, size=512))
        synth_brats(root / "brats", BratsSynthConfig(n_cases=cases, shape=(112, 112, 112)))
        print(f"machine: {describe()}")
        cxr = CxrTask(CxrTaskConfig(data=root / "cxr", preset="densenet121", size=224))
        rate, wait = measure(cxr, args.cxr_batch, args.steps, args.workers)
        print(
            f"cxr  DenseNet-121+CBAM 224²  batch {args.cxr_batch}: {rate:.1f} images/s, "
            f"data wait {wait:.1%} (workers={args.workers})"
        )
        brats = BratsTask(BratsTaskConfig(data=root / "brats", preset="default", roi=96))
        rate, wait = measure(brats, args.brats_batch, args.steps, args.workers)
        print(
            f"brats residual U-Net 96³ crop batch {args.brats_batch}: {rate:.2f} volumes/s, "
            f"data wait {wait:.1%} (workers={args.workers})"
        )


if __name__ == "__main__":
    main()
