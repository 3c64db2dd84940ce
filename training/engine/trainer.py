"""The training loop shared by every task: AdamW, warm-up + cosine LR, mixed precision,
gradient clipping, checkpoints with resume, seeds, DDP and a progress bar."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from monai.data.utils import worker_init_fn
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from training.engine.checkpoint import load_checkpoint, save_checkpoint
from training.engine.distributed import DistContext, barrier, unwrap, wrap_model
from training.engine.precision import Precision, choose_precision
from training.engine.schedule import warmup_cosine


@dataclass
class TrainConfig:
    """Optimisation settings common to every task."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    precision: Precision = "auto"
    num_workers: int = 0
    seed: int = 0
    out_dir: Path = Path("runs")
    resume: Path | None = None
    max_steps_per_epoch: int | None = None
    #: The MLflow run this training is tracked in; recorded in every checkpoint's metadata
    #: as ``training_run_id`` (export writes it into config.pbtxt).
    run_id: str | None = None


class Task(Protocol):
    """What the loop needs from a task (CXR classification, BraTS segmentation)."""

    name: str
    monitor: str  # validation metric to maximise

    def build_model(self) -> nn.Module: ...
    def train_dataset(self) -> Dataset[dict[str, torch.Tensor]]: ...
    def compute_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor: ...
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...
    def checkpoint_meta(self) -> dict[str, Any]: ...


@dataclass
class EpochStats:
    epoch: int
    loss: float
    lr: float
    seconds: float
    data_wait_fraction: float
    samples_per_s: float
    val: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Same seed for Python, NumPy and torch (every process adds its rank beforehand)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


def fit(
    task: Task,
    config: TrainConfig,
    context: DistContext,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[nn.Module, Path, list[EpochStats]]:
    """Train ``task``; return the model with the best validation weights loaded, the path of
    the best checkpoint and the per-epoch statistics. ``config.resume`` continues a run."""
    seed_everything(config.seed + context.rank)
    model = wrap_model(task.build_model(), context)
    dataset = task.train_dataset()
    sampler = (
        DistributedSampler(dataset, shuffle=True, seed=config.seed) if context.distributed else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        drop_last=len(dataset) > config.batch_size,
        generator=generator,
        persistent_workers=config.num_workers > 0,
        worker_init_fn=worker_init_fn,  # distinct random augmentation per worker
    )
    steps_per_epoch = (
        len(loader)
        if config.max_steps_per_epoch is None
        else min(len(loader), config.max_steps_per_epoch)
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = warmup_cosine(
        optimizer, int(config.warmup_epochs * steps_per_epoch), config.epochs * steps_per_epoch
    )
    policy = choose_precision(config.precision, context.device)
    scaler = policy.scaler()
    best_path = config.out_dir / "best.pt"
    last_path = config.out_dir / "last.pt"
    start_epoch, best_score = 0, -float("inf")
    if config.resume is not None:
        state = load_checkpoint(config.resume, map_location=context.device)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best_score = float(state["best_score"])
    history: list[EpochStats] = []
    for epoch in range(start_epoch, config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = _train_epoch(
            model, loader, task, optimizer, scheduler, scaler, policy, config, context, epoch,
            steps_per_epoch,
        )  # fmt: skip
        stats.val = task.validate(unwrap(model), context.device) if context.is_main else {}
        score = stats.val.get(task.monitor, -float("inf"))
        if context.is_main:
            state = {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best_score": max(best_score, score),
                "meta": {
                    **task.checkpoint_meta(),
                    "training_run_id": config.run_id or "",
                    "train_config": _plain(asdict(config)),
                },
            }
            save_checkpoint(last_path, state)
            if score > best_score:
                best_score = score
                save_checkpoint(best_path, state)
            if on_epoch is not None:
                on_epoch(stats)
        history.append(stats)
        barrier(context)
    if best_path.exists():
        unwrap(model).load_state_dict(load_checkpoint(best_path, context.device)["model"])
    return unwrap(model), best_path, history


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def _train_epoch(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    task: Task,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    policy: Any,
    config: TrainConfig,
    context: DistContext,
    epoch: int,
    steps: int,
) -> EpochStats:
    model.train()
    started = time.perf_counter()
    waiting = 0.0
    total_loss, samples = 0.0, 0
    columns = (
        TextColumn(f"[bold]{task.name}[/] epoch {epoch + 1}/{config.epochs}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not context.is_main, transient=False) as progress:
        bar = progress.add_task("train", total=steps, loss=float("nan"))
        iterator = iter(loader)
        for _ in range(steps):
            fetch_started = time.perf_counter()
            batch = _to_device(next(iterator), context.device)
            waiting += time.perf_counter() - fetch_started
            optimizer.zero_grad(set_to_none=True)
            with policy.autocast():
                loss = task.compute_loss(model, batch)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            batch_size = int(next(iter(batch.values())).shape[0])
            total_loss += float(loss.detach()) * batch_size
            samples += batch_size
            progress.update(bar, advance=1, loss=total_loss / max(samples, 1))
    seconds = time.perf_counter() - started
    return EpochStats(
        epoch=epoch,
        loss=total_loss / max(samples, 1),
        lr=float(scheduler.get_last_lr()[0]),
        seconds=seconds,
        data_wait_fraction=waiting / seconds if seconds else 0.0,
        samples_per_s=samples / seconds if seconds else 0.0,
    )
