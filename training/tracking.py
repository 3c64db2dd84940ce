"""MLflow tracking and model registry, local by default.

Without MLFLOW_TRACKING_URI the store is a SQLite database and an artifact folder under
``$MEDVISION_DATA_DIR/mlflow`` (the registry needs a database-backed store); with it, any
tracking server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion


def data_dir() -> Path:
    """MEDVISION_DATA_DIR (default ./var), the same directory the control plane uses."""
    return Path(os.environ.get("MEDVISION_DATA_DIR", "./var")).resolve()


_default_uri: str | None = None  # the local store URI this module set (MLflow exports it)


def configure(experiment: str) -> str:
    """Point MLflow at the configured store and select ``experiment``; returns its id."""
    global _default_uri
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not user_uri or user_uri == _default_uri:
        root = data_dir() / "mlflow"
        root.mkdir(parents=True, exist_ok=True)
        _default_uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(_default_uri)
        artifacts: str | None = (root / "artifacts").as_uri()
    else:
        artifacts = None
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return str(found.experiment_id)
    experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return str(experiment_id)


@contextmanager
def run(experiment: str, run_name: str, params: Mapping[str, Any]) -> Iterator[str]:
    """An MLflow run with ``params`` logged; yields the run id."""
    configure(experiment)
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.log_params({key: _param(value) for key, value in params.items()})
        mlflow.set_tag("medvision.task", experiment)
        yield str(active.info.run_id)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]


def log_metrics(metrics: Mapping[str, float | None], step: int | None = None) -> None:
    """Log the finite numbers of ``metrics`` to the active run."""
    clean = {
        key.replace("/", "_"): float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and value == value
    }
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifacts(paths: Mapping[str, Path] | list[Path], artifact_path: str) -> None:
    """Copy files into the active run's artifacts under ``artifact_path``."""
    for path in paths.values() if isinstance(paths, Mapping) else paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def register_checkpoint(
    model_name: str, run_id: str, artifact_path: str = "checkpoint"
) -> ModelVersion:
    """Register the run's checkpoint artifacts as a new version of ``model_name``."""
    client = MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        client.create_registered_model(
            model_name, description="MedVision model (checkpoint + evaluation report)"
        )
    source = mlflow.get_run(run_id).info.artifact_uri.rstrip("/") + f"/{artifact_path}"
    return client.create_model_version(model_name, source=source, run_id=run_id)


def log_evaluation(
    kind: str,
    split: str,
    checkpoint: Path,
    summary: Mapping[str, float | None],
    report: Mapping[str, Path],
) -> None:
    """Record a stand-alone evaluation (``medvision evaluate``) as its own MLflow run."""
    with run(f"medvision-{kind}-evaluation", f"evaluate-{split}", {"checkpoint": str(checkpoint)}):
        log_metrics(summary)
        log_artifacts(report, "report")
