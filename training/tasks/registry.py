"""The training tasks, one per served model, and what the commands look up in them.

``medvision data synth``, ``medvision train KIND``, ``medvision evaluate KIND``, the training
runner and ``medvision export demo`` read a model's :class:`TrainingTask` here instead of
branching on its name. An entry holds only light data (options, defaults, the demo recipe)
and functions that import the task's torch code when called, so building the command line
imports no torch.

To add a model: write its task module (``ct_head.py`` is the pattern: a task config
dataclass with ``data``, ``preset`` and ``skip_bad``, a task class the training loop runs,
``evaluate_checkpoint``), a synthetic data generator, and one :class:`TrainingTask` in
:data:`TRAINING_TASKS`; ``tests/training/test_task_registry.py`` fails while a served model
(``medvision_contract.served.SERVED_CONTRACTS``) has no entry or an entry lacks a piece.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import typer

from training.command import CliOption

if TYPE_CHECKING:
    from training.engine.trainer import Task


@dataclass(frozen=True)
class SynthOptions:
    """The options of ``medvision data synth`` (each generator reads those it has)."""

    #: Images, cases or studies; 0 = the generator's default.
    n: int = 0
    #: Radiograph edge (cxr), volume edge (brats) and slice matrix (ct) in pixels.
    size: int = 128
    shape: int = 48
    matrix: int = 64
    #: Slices per CT series, lowest and highest.
    slices: tuple[int, int] = (16, 24)
    weak_group: tuple[str, str] | None = None
    seed: int = 0


class EvaluateCheckpoint(Protocol):
    """``medvision evaluate KIND``: evaluate a checkpoint on a split of a data set, write the
    report into ``out`` and return its paths (``markdown``, ``json``, plots)."""

    def __call__(
        self,
        checkpoint: Path,
        data: Path,
        split: str,
        out: Path,
        min_group_size: int,
        skip_bad: bool,
    ) -> dict[str, Path]: ...


@dataclass(frozen=True)
class TaskCode:
    """A task's torch-side code, imported when a command runs."""

    #: The task config dataclass, built from ``data``, ``preset``, ``skip_bad`` and the
    #: task's own ``medvision train`` options.
    config: Callable[..., Any]
    #: The training task for a config and a seed (:class:`training.engine.trainer.Task`).
    task: Callable[[Any, int], Task]
    #: ``medvision evaluate KIND``: the report's paths.
    evaluate_checkpoint: EvaluateCheckpoint


@dataclass(frozen=True)
class DemoRecipe:
    """How ``medvision export demo`` makes the model's synthetic demo network (not clinical):
    the synthetic data set, the task config fields beside ``data`` and the training
    settings (``run_training`` keywords)."""

    data: SynthOptions
    task: dict[str, Any]
    training: dict[str, Any]


@dataclass(frozen=True)
class TrainingTask:
    """One served model's training side (see the module docstring)."""

    #: The served model's name: ``medvision train NAME``, ``medvision export NAME``.
    name: str
    #: ``medvision data synth DATASET`` and the public layout it writes and reads.
    dataset: str
    layout: str
    #: Help lines of ``medvision train NAME`` and ``medvision evaluate NAME``.
    train_summary: str
    evaluate_summary: str
    #: ``medvision train NAME`` options that are fields of the task config (besides
    #: ``--data`` and ``--skip-bad``), e.g. ``--preset`` and the input size.
    options: tuple[CliOption, ...]
    #: Defaults of the loop's settings: epochs, batch size, learning rate, workers.
    epochs: int
    batch_size: int
    lr: float
    workers: int
    #: ``medvision evaluate NAME --split`` choices and the smallest fairness group reported.
    splits: str
    min_group_size: int
    synth: Callable[[Path, SynthOptions], dict[str, object]]
    code: Callable[[], TaskCode]
    demo: DemoRecipe


def _synth_cxr(out: Path, options: SynthOptions) -> dict[str, object]:
    from training.data.synth import CxrSynthConfig, synth_cxr

    n = {"n_images": options.n} if options.n else {}
    config = CxrSynthConfig(
        **n, size=options.size, weak_group=options.weak_group, seed=options.seed
    )
    return synth_cxr(out, config)


def _synth_brats(out: Path, options: SynthOptions) -> dict[str, object]:
    from training.data.synth import BratsSynthConfig, synth_brats

    n = {"n_cases": options.n} if options.n else {}
    shape = (options.shape,) * 3
    config = BratsSynthConfig(**n, shape=shape, weak_group=options.weak_group, seed=options.seed)
    return synth_brats(out, config)


def _synth_ct(out: Path, options: SynthOptions) -> dict[str, object]:
    from training.data.synth_ct import CtSynthConfig, synth_ct

    n = {"n_studies": options.n} if options.n else {}
    low, high = options.slices
    config = CtSynthConfig(
        **n, size=options.matrix, min_slices=low, max_slices=high,
        weak_group=options.weak_group, seed=options.seed,
    )  # fmt: skip
    return synth_ct(out, config)


def _cxr_code() -> TaskCode:
    from training.tasks import cxr

    return TaskCode(cxr.CxrTaskConfig, cxr.CxrTask, cxr.evaluate_checkpoint)


def _brats_code() -> TaskCode:
    from training.tasks import brats

    return TaskCode(brats.BratsTaskConfig, brats.BratsTask, brats.evaluate_checkpoint)


def _ct_head_code() -> TaskCode:
    from training.tasks import ct_head

    return TaskCode(ct_head.CtHeadTaskConfig, ct_head.CtHeadTask, ct_head.evaluate_checkpoint)


_DEMO_RUN = {"precision": "fp32", "seed": 0}

#: Every trainable model by served name, in the order of ``SERVED_CONTRACTS``.
TRAINING_TASKS: dict[str, TrainingTask] = {
    task.name: task
    for task in (
        TrainingTask(
            name="cxr",
            dataset="cxr",
            layout="NIH ChestX-ray14",
            train_summary="Train the chest X-ray classifier, evaluate it on the test split, "
            "log all to MLflow.",
            evaluate_summary="AUROC with bootstrap CIs, CAM localisation and fairness; "
            "JSON + Markdown + plots.",
            options=(
                (
                    "preset",
                    str,
                    typer.Option("densenet121", help="densenet121 (clinical) or tiny (demo/tests)"),
                ),
                ("size", int, typer.Option(224, help="input size (224 or 320 for DenseNet-121)")),
                ("hflip", bool, typer.Option(True, help="random horizontal flips")),
            ),
            epochs=10,
            batch_size=16,
            lr=1e-3,
            workers=1,
            splits="test, val or trainval",
            min_group_size=30,
            synth=_synth_cxr,
            code=_cxr_code,
            demo=DemoRecipe(
                data=SynthOptions(n=600, size=128),
                task={"preset": "demo", "size": 128, "hflip": False},
                training={"epochs": 12, "batch_size": 32, "lr": 3e-3, "workers": 1, **_DEMO_RUN},
            ),
        ),
        TrainingTask(
            name="brats",
            dataset="brats",
            layout="BraTS 2023",
            train_summary="Train the brain-tumour U-Net, evaluate it on the test split, "
            "log all to MLflow.",
            evaluate_summary="Dice and HD95 per region on full volumes (sliding window), "
            "with fairness.",
            options=(
                ("preset", str, typer.Option("default", help="default or tiny (demo/tests)")),
                ("roi", int, typer.Option(96, help="training crop edge in voxels")),
            ),
            epochs=50,
            batch_size=2,
            lr=2e-3,
            workers=1,
            splits="test, val or all",
            min_group_size=10,
            synth=_synth_brats,
            code=_brats_code,
            demo=DemoRecipe(
                data=SynthOptions(n=12, shape=32),
                task={"preset": "default", "roi": 32},
                training={"epochs": 15, "batch_size": 2, "lr": 2e-3, "workers": 1, **_DEMO_RUN},
            ),
        ),
        TrainingTask(
            name="ct_head",
            dataset="ct",
            layout="RSNA Intracranial Hemorrhage",
            train_summary="Train the head CT haemorrhage classifier, evaluate it on the test "
            "split, log to MLflow.",
            evaluate_summary="AUROC (slice and study) with CIs, RSNA log loss, pointing game, "
            "fairness; JSON + Markdown.",
            options=(
                (
                    "preset",
                    str,
                    typer.Option("densenet121", help="densenet121 (clinical), demo or tiny"),
                ),
                (
                    "size",
                    int,
                    typer.Option(
                        256, help="slice input size in pixels (slices are fitted into it)"
                    ),
                ),
                (
                    "context",
                    int,
                    typer.Option(1, help="neighbouring slices each side (2.5-D); 0 = 2-D"),
                ),
                ("hflip", bool, typer.Option(True, help="random left/right flips")),
            ),
            epochs=10,
            batch_size=32,
            lr=1e-3,
            workers=0,
            splits="test, val, train or all",
            min_group_size=10,
            synth=_synth_ct,
            code=_ct_head_code,
            # About 80 s on two CPU cores; docs/ct_head.md records what it reaches on the
            # held-out split.
            demo=DemoRecipe(
                data=SynthOptions(n=60, matrix=64),
                task={"preset": "demo", "size": 64, "context": 1},
                training={"epochs": 5, "batch_size": 32, "lr": 3e-3, "workers": 0, **_DEMO_RUN},
            ),
        ),
    )
}


def training_task(name: str) -> TrainingTask:
    """The training task of the served model ``name``; ``ValueError`` naming the known ones."""
    task = TRAINING_TASKS.get(name)
    if task is None:
        known = ", ".join(TRAINING_TASKS)
        raise ValueError(f"unknown model kind {name!r}; expected one of {known}")
    return task
