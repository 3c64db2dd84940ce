"""``medvision data``, ``medvision train`` and ``medvision evaluate``.

The ``train KIND`` and ``evaluate KIND`` commands are made from the training task registry
(:mod:`training.tasks.registry`), one per served model. Torch and MONAI are imported inside
the commands, so ``medvision --help`` stays light. The same ``train`` command runs on one
CPU, one GPU, or many GPUs under torchrun:
``torchrun --standalone --nproc-per-node 4 -m control.cli.main train cxr --data DIR``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import typer

from training.command import CliOption, command
from training.tasks.registry import TRAINING_TASKS, SynthOptions, TrainingTask

data_app = typer.Typer(help="Datasets: synthetic data in the real layouts.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model (logged to MLflow).", no_args_is_help=True)
evaluate_app = typer.Typer(
    help="Evaluate a checkpoint (metrics, fairness, report).", no_args_is_help=True
)

SYNTH_BANNER = "SYNTHETIC data (made by `medvision data synth`), not patient data"
DATASETS = {task.dataset: task for task in TRAINING_TASKS.values()}


@data_app.command("synth")
def synth(
    kind: str = typer.Argument(..., help=", ".join(DATASETS)),
    out: Path = typer.Option(..., "--out", help="output folder"),
    n: int = typer.Option(0, help="images (cxr), cases (brats) or studies (ct); 0 = default"),
    size: int = typer.Option(128, help="cxr image size in pixels"),
    shape: int = typer.Option(48, help="brats volume edge in voxels"),
    matrix: int = typer.Option(64, help="ct slice matrix in pixels"),
    slices: str = typer.Option("16-24", help="ct slices per series, MIN-MAX"),
    weak_group: str | None = typer.Option(
        None, help="ATTRIBUTE=VALUE whose signal is weaker, e.g. race='Group B' or sex=F"
    ),
    seed: int = typer.Option(0),
) -> None:
    """Write a synthetic dataset in the NIH ChestX-ray14 (cxr), BraTS 2023 (brats) or RSNA
    Intracranial Hemorrhage (ct) layout."""
    task = DATASETS.get(kind)
    if task is None:
        raise typer.BadParameter(f"kind must be one of {', '.join(DATASETS)}")
    low, _, high = slices.partition("-")
    if not (low.isdigit() and (high or low).isdigit()):
        raise typer.BadParameter("--slices must look like MIN-MAX, e.g. 16-24")
    options = SynthOptions(
        n=n, size=size, shape=shape, matrix=matrix, slices=(int(low), int(high or low)),
        weak_group=_weak_group(weak_group), seed=seed,
    )  # fmt: skip
    summary = task.synth(out, options)
    typer.echo(f"{SYNTH_BANNER}: wrote {out}")
    typer.echo(_short(summary))


def _weak_group(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    attribute, sep, group = value.partition("=")
    if not sep or not attribute or not group:
        raise typer.BadParameter("--weak-group must look like ATTRIBUTE=VALUE")
    return attribute.strip(), group.strip()


def _short(summary: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list))


def _data_option(task: TrainingTask) -> CliOption:
    return ("data", Path, typer.Option(..., help=f"dataset root in the {task.layout} layout"))


SkipBadOption = typer.Option(False, help="skip bad rows/files and count them in the report")


def train_options(task: TrainingTask) -> list[CliOption]:
    """The options of ``medvision train NAME``: the data, the task's own, the loop's."""
    return [
        _data_option(task),
        *task.options,
        ("epochs", int, typer.Option(task.epochs)),
        ("batch_size", int, typer.Option(
            task.batch_size, help="items per batch (images, crops or slices)")),
        ("lr", float, typer.Option(task.lr)),
        ("precision", str, typer.Option("auto", help="auto, fp32, bf16 or fp16 (CUDA)")),
        ("workers", int, typer.Option(
            task.workers, help="data loader worker processes (0 = in the main one)")),
        ("seed", int, typer.Option(0)),
        ("out", Path | None, typer.Option(
            None, help="run folder (default $MEDVISION_DATA_DIR/runs/...)")),
        ("resume", Path | None, typer.Option(None, help="checkpoint to continue from")),
        ("skip_bad", bool, SkipBadOption),
        ("register", str | None, typer.Option(
            None, help="register the model under this MLflow name")),
        ("device", str, typer.Option("auto", help="auto, cpu or cuda")),
    ]  # fmt: skip


def _train(task: TrainingTask, *, data: Path, skip_bad: bool, **values: Any) -> None:
    """Build the task config from ``--data``, ``--skip-bad`` and the task's own options; the
    other values are the training loop's settings (``run_training``'s keywords)."""
    from training.tasks.runner import run_training

    fields = {name: values.pop(name) for name, _type, _option in task.options}
    task_config = task.code().config(data=data, skip_bad=skip_bad, **fields)
    run_training(task.name, task_config, **values)


def evaluate_options(task: TrainingTask) -> list[CliOption]:
    """The options of ``medvision evaluate NAME``."""
    return [
        ("checkpoint", Path, typer.Option(
            ..., help=f"a checkpoint from `medvision train {task.name}`")),
        _data_option(task),
        ("split", str, typer.Option("test", help=task.splits)),
        ("out", Path, typer.Option(Path("evaluation"), help="report folder")),
        ("min_group_size", int, typer.Option(
            task.min_group_size, help="smaller fairness groups are reported as too small")),
        ("skip_bad", bool, SkipBadOption),
    ]  # fmt: skip


def _evaluate(task: TrainingTask, **values: Any) -> None:
    paths = task.code().evaluate_checkpoint(**values)
    typer.echo(f"report: {paths['markdown']}")


for _task in TRAINING_TASKS.values():
    train_app.command(_task.name)(
        command(train_options(_task), functools.partial(_train, _task), _task.train_summary)
    )
    evaluate_app.command(_task.name)(
        command(
            evaluate_options(_task), functools.partial(_evaluate, _task), _task.evaluate_summary
        )
    )
