"""Every served model has a complete training task; the commands are made from the registry.

Adding a served model to ``medvision_contract.served`` without an entry in
``training.tasks.registry.TRAINING_TASKS`` fails here, and so does an entry whose options,
demo recipe or code do not fit its task config, or a model without typed checkpoint
metadata.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from typer.testing import CliRunner

from control.cli.main import app
from medvision_contract.served import SERVED_CONTRACTS
from training.cli import evaluate_app, train_app
from training.engine.meta import META_TYPES
from training.tasks.registry import TRAINING_TASKS, TrainingTask, training_task
from training.tasks.runner import run_training

KINDS = sorted(SERVED_CONTRACTS)


def test_every_served_model_has_a_training_task_and_nothing_else_does() -> None:
    assert list(TRAINING_TASKS) == list(SERVED_CONTRACTS)
    datasets = [task.dataset for task in TRAINING_TASKS.values()]
    assert len(set(datasets)) == len(datasets)


@pytest.mark.parametrize("kind", KINDS)
def test_task_is_complete(kind: str) -> None:
    task = training_task(kind)
    assert task.name == kind
    for field in dataclasses.fields(TrainingTask):
        assert getattr(task, field.name) not in ("", (), None), f"{kind}: {field.name} is empty"
    assert task.epochs >= 1 and task.batch_size >= 1 and task.lr > 0 and task.workers >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_task_code_fits_the_options_and_the_demo(kind: str) -> None:
    task = training_task(kind)
    code = task.code()
    config_fields = {f.name for f in dataclasses.fields(code.config)}
    options = {name for name, _type, _option in task.options}
    assert {"data", "preset", "skip_bad"} <= config_fields
    assert "preset" in options and options <= config_fields
    assert set(task.demo.task) <= config_fields - {"data"}
    run_parameters = set(inspect.signature(run_training).parameters)
    assert set(task.demo.training) <= run_parameters
    assert {"epochs", "batch_size", "lr", "precision", "workers", "seed"} <= set(task.demo.training)
    assert code.task.name == kind  # type: ignore[attr-defined]
    for method in ("build_model", "train_dataset", "compute_loss", "validate", "finalize"):
        assert callable(getattr(code.task, method, None)), f"{kind} task lacks {method}"
    assert callable(code.evaluate_checkpoint)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_metadata_is_typed(kind: str) -> None:
    assert META_TYPES[kind].task == kind


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="cxr, brats, ct_head"):
        training_task("mammo")


@pytest.mark.parametrize("kind", KINDS)
def test_commands_are_made_from_the_registry(kind: str) -> None:
    runner = CliRunner()
    task = training_task(kind)
    env = {"COLUMNS": "200"}
    trained = runner.invoke(train_app, [kind, "--help"], env=env)
    assert trained.exit_code == 0, trained.output
    for name, _type, _option in task.options:
        assert f"--{name.replace('_', '-')}" in trained.output
    assert f"[default: {task.epochs}]" in trained.output
    evaluated = runner.invoke(evaluate_app, [kind, "--help"], env=env)
    assert evaluated.exit_code == 0 and task.layout in evaluated.output
    synth = runner.invoke(app, ["data", "synth", "--help"], env=env)
    assert task.dataset in synth.output


def test_synth_refuses_an_unknown_dataset(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["data", "synth", "mammo", "--out", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code != 0 and "cxr, brats, ct" in result.output
