"""``medvision data synth`` → ``train`` → ``evaluate`` end to end, with MLflow, on tiny data."""

from __future__ import annotations

import json

from mlflow import MlflowClient
from typer.testing import CliRunner

from control.cli.main import app
from tests.fixtures.cli import invoke
from training.engine.checkpoint import load_checkpoint
from training.labels import CXR_LABELS


def test_cxr_train_registers_a_model_and_evaluates(data_dir):
    data = data_dir / "cxr"
    synth = invoke("data", "synth", "cxr", "--out", str(data), "--n", "80", "--size", "64")
    assert "SYNTHETIC" in synth.output
    out = data_dir / "run"
    invoke(
        "train", "cxr", "--data", str(data), "--preset", "tiny", "--size", "64",
        "--epochs", "1", "--batch-size", "16", "--out", str(out), "--register", "cxr-test",
    )  # fmt: skip
    state = load_checkpoint(out / "best.pt")
    assert state["meta"]["labels"] == list(CXR_LABELS)
    assert len(state["meta"]["thresholds"]) == 14
    assert state["meta"]["synthetic_data"] is True
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert report["metrics"]["classification"]["n_boot"] == 1000
    assert "SYNTHETIC" in (out / "evaluation" / "report.md").read_text()

    client = MlflowClient()
    versions = client.search_model_versions("name = 'cxr-test'")
    assert [str(v.version) for v in versions] == ["1"]
    run = client.get_run(versions[0].run_id)
    assert "val_mean_auroc" in run.data.metrics
    assert "test_mean_auroc" in run.data.metrics
    assert run.data.params["synthetic_data"] == "true"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert "checkpoint/best.pt" in artifacts

    evaluated = invoke(
        "evaluate", "cxr", "--checkpoint", str(out / "best.pt"), "--data", str(data),
        "--out", str(data_dir / "eval"), "--min-group-size", "5",
    )  # fmt: skip
    assert "report.md" in evaluated.output
    assert (data_dir / "eval" / "roc_curves.png").exists()


def test_brats_train_and_evaluate(data_dir):
    data = data_dir / "brats"
    invoke("data", "synth", "brats", "--out", str(data), "--n", "8", "--shape", "24")
    out = data_dir / "run"
    invoke(
        "train", "brats", "--data", str(data), "--preset", "tiny", "--roi", "24",
        "--epochs", "1", "--batch-size", "2", "--out", str(out),
    )  # fmt: skip
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert set(report["metrics"]["segmentation"]) == {"ET", "TC", "WT"}
    # The BraTS 2023 challenge's lesion-wise figures are reported beside MONAI's.
    for region in report["metrics"]["segmentation"].values():
        assert 0.0 <= region["lesion_wise"]["dice"]["mean"] <= 1.0
        assert 0.0 <= region["lesion_wise"]["hd95"]["mean"] <= 374.0
        assert region["hd95_challenge"]["n"] == region["dice"]["n"]
    assert "The challenge's figures" in (out / "evaluation" / "report.md").read_text()
    assert load_checkpoint(out / "best.pt")["meta"]["regions"] == ["ET", "TC", "WT"]


def test_bad_dataset_is_named_or_skipped(data_dir):
    data = data_dir / "cxr"
    invoke("data", "synth", "cxr", "--out", str(data), "--n", "60", "--size", "64")
    missing = sorted((data / "images").iterdir())[0]
    missing.unlink()
    result = CliRunner().invoke(
        app,
        ["train", "cxr", "--data", str(data), "--preset", "tiny", "--size", "64",
         "--epochs", "1", "--out", str(data_dir / "run")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert missing.name in str(result.exception)
    skipped = invoke(
        "train", "cxr", "--data", str(data), "--preset", "tiny", "--size", "64",
        "--epochs", "1", "--batch-size", "16", "--out", str(data_dir / "run2"), "--skip-bad",
    )  # fmt: skip
    assert "skipped 1" in skipped.output
