"""Run a training task end to end: train, pick thresholds, evaluate, log to MLflow."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import typer

from training import tracking
from training.engine.distributed import init_distributed, shutdown
from training.engine.trainer import EpochStats, TrainConfig, fit
from training.tasks.registry import training_task


def run_training(
    kind: str,
    task_config: Any,
    epochs: int,
    batch_size: int,
    lr: float,
    precision: str,
    workers: int,
    seed: int,
    out: Path | None,
    resume: Path | None,
    register: str | None,
    device: str,
) -> dict[str, Any]:
    """Train the served model ``kind`` (a key of ``TRAINING_TASKS``) and evaluate it on its
    test split; returns the test summary (main process)."""
    context = init_distributed(device)
    task = training_task(kind).code().task(task_config, seed)
    run_name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = out or tracking.data_dir() / "runs" / run_name
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        precision=precision,  # type: ignore[arg-type]
        num_workers=workers,
        seed=seed,
        out_dir=out_dir,
        resume=resume,
    )
    params = {**task.params(), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "precision": precision, "seed": seed, "world_size": context.world_size}  # fmt: skip
    tracked = tracking.run(f"medvision-{kind}", run_name, params) if context.is_main else None
    summary: dict[str, Any] = {}
    with tracked if tracked is not None else contextlib.nullcontext() as run_id:
        config.run_id = run_id

        def on_epoch(stats: EpochStats) -> None:
            metrics = {"train_loss": stats.loss, "lr": stats.lr,
                       "data_wait_fraction": stats.data_wait_fraction,
                       "samples_per_s": stats.samples_per_s,
                       **{f"val_{k}": v for k, v in stats.val.items()}}  # fmt: skip
            tracking.log_metrics(metrics, step=stats.epoch)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in stats.val.items())
            typer.echo(f"epoch {stats.epoch + 1}: loss {stats.loss:.4f}, {shown}")

        model, best_path, _history = fit(task, config, context, on_epoch if tracked else None)
        if context.is_main:
            summary, report_paths = task.finalize(model, best_path, out_dir / "evaluation")
            tracking.log_metrics({f"test_{k}": v for k, v in summary.items()})
            tracking.log_artifacts([best_path], "checkpoint")
            tracking.log_artifacts(report_paths, "report")
            if register:
                version = tracking.register_checkpoint(register, str(run_id))
                summary["registered_version"] = version.version
                typer.echo(f"registered {register} version {version.version}")
            summary["run_id"] = run_id
            summary["checkpoint"] = str(best_path)
            typer.echo("test: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    shutdown(context)
    return summary
