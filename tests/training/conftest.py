"""Fixtures shared by the training tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private MEDVISION_DATA_DIR (so a private local MLflow store) under ``tmp_path``."""
    monkeypatch.setenv("MEDVISION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    mlflow.set_tracking_uri(None)
