"""The export side of drift: ``medvision export cxr --drift-dicom`` writes the version's
reference next to config.pbtxt (and in the version folder), and the control plane reads it
under the model version the export named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from control.observability.drift import ReferenceIndex
from export.cli import app
from export.drift_reference import FILENAME, FORMAT
from tests.export.test_export_cli import CXR_META, FAKE_PREPROCESS
from tests.fixtures.dx import chest_dx
from training.engine.checkpoint import save_checkpoint
from training.networks.cxr import build_cxr_net


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "cxr" / "best.pt"
    save_checkpoint(path, {"model": build_cxr_net("tiny").state_dict(), "meta": CXR_META})
    return path


def test_export_with_validation_radiographs_writes_the_drift_reference(
    checkpoint: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "model_repository"
    (repository / "cxr_preprocess").mkdir(parents=True)
    (repository / "cxr_preprocess" / "config.pbtxt").write_text(FAKE_PREPROCESS)
    validation = []
    for seed in range(6):
        path = tmp_path / "validation" / f"{seed}.dcm"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chest_dx(96, seed=seed))
        validation.append(path)
    args = ["cxr", "--checkpoint", str(checkpoint), "--repository", str(repository)]
    for path in validation:
        args += ["--drift-dicom", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    model_dir = repository / "cxr_net"
    reference = json.loads((model_dir / FILENAME).read_text())
    assert json.loads((model_dir / "1" / FILENAME).read_text()) == reference
    assert reference["format"] == FORMAT and reference["n"] == 6
    features = reference["features"]
    assert {f"probability:{label}" for label in CXR_META["labels"]} <= set(features)
    assert {"input:intensity_p50", "input:height", "input:width"} <= set(features)
    assert features["input:height"]["quantiles"][0] == 96
    for feature in features.values():
        assert len(feature["proportions"]) == len(feature["edges"]) + 1
        assert sum(feature["proportions"]) == pytest.approx(1.0)
    # The control plane finds it under the version the export wrote into config.pbtxt.
    assert f"wrote {model_dir / FILENAME}" in result.output
    found = ReferenceIndex(repository).get("cxr", reference["model_version"])
    assert found == reference
