"""Observability tests read drift references from a model repository of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.config import Settings


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The suite's settings with an empty model repository under the test's folder."""
    return settings.model_copy(update={"model_repository": tmp_path / "model_repository"})
