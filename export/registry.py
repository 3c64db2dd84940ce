"""MLflow model registry: fetch a registered training checkpoint, register an exported model.

The store is the one ``training.tracking`` configures: SQLite under ``$MEDVISION_DATA_DIR``
unless ``MLFLOW_TRACKING_URI`` is set. MLflow is imported inside the functions.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPORT_EXPERIMENT = "medvision-export"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")


@dataclass(frozen=True)
class FetchedCheckpoint:
    """A checkpoint downloaded from the registry and the training run that logged it."""

    path: Path
    run_id: str | None


@dataclass(frozen=True)
class RegisteredExport:
    """The registry entry created for an exported Triton model."""

    name: str
    version: str
    run_id: str
    source: str


def fetch_checkpoint(model_uri: str, dst: Path | None = None) -> FetchedCheckpoint:
    """Download ``models:/NAME/VERSION`` and return the ``best.pt`` inside it.

    Raises ``ValueError`` for a malformed URI and ``FileNotFoundError`` when the downloaded
    artifacts hold no ``best.pt``.
    """
    match = _MODEL_URI.match(model_uri)
    if match is None:
        raise ValueError(f"expected an MLflow model URI models:/NAME/VERSION, got {model_uri!r}")
    import mlflow
    from mlflow import MlflowClient

    from training import tracking

    tracking.configure(EXPORT_EXPERIMENT)
    target = dst or Path(tempfile.mkdtemp(prefix="medvision-export-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target)))
    found = (
        [local] if local.is_file() and local.name == "best.pt" else sorted(local.rglob("best.pt"))
    )
    if not found:
        raise FileNotFoundError(f"{model_uri}: no best.pt among the registered artifacts")
    version = MlflowClient().get_model_version(match["name"], match["version"])
    return FetchedCheckpoint(path=found[0], run_id=version.run_id or None)


def register_export(
    name: str,
    *,
    model_name: str,
    config_path: Path,
    version_dir: Path,
    params: Mapping[str, Any],
) -> RegisteredExport:
    """Log an exported Triton model as artifacts of a new run and register it as ``name``.

    The artifacts keep the repository layout: ``<model_name>/config.pbtxt`` and
    ``<model_name>/<version>/...``; the registered version's source is ``<model_name>``.
    """
    import mlflow
    from mlflow import MlflowClient

    from training import tracking

    tracking.configure(EXPORT_EXPERIMENT)
    client = MlflowClient()
    with mlflow.start_run(run_name=f"export-{model_name}-{version_dir.name}") as active:
        run_id = str(active.info.run_id)
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.set_tag("medvision.task", EXPORT_EXPERIMENT)
        mlflow.log_artifact(str(config_path), artifact_path=model_name)
        mlflow.log_artifacts(str(version_dir), artifact_path=f"{model_name}/{version_dir.name}")
        source = active.info.artifact_uri.rstrip("/") + f"/{model_name}"
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(
            name, description="MedVision Triton network model (config.pbtxt + weights)"
        )
    created = client.create_model_version(name, source=source, run_id=run_id)
    return RegisteredExport(name=name, version=str(created.version), run_id=run_id, source=source)
