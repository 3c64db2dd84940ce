"""``medvision data synth ct`` → ``train ct_head`` → ``evaluate ct_head`` → ``export ct_head``
end to end on tiny data: MLflow run recorded in the checkpoint and in config.pbtxt, the
report's figures, and ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from export.triton_config import config_parameters, parse_config
from medvision_contract.labels import CT_HEAD_LABELS
from tests.fixtures.cli import invoke
from training.engine.checkpoint import load_checkpoint
from training.tasks.ct_head import weighted_log_loss


def test_train_evaluate_export_ct_head(data_dir):
    data = data_dir / "ct"
    synth = invoke("data", "synth", "ct", "--out", str(data), "--n", "10", "--slices", "6-8",
                   "--matrix", "48")  # fmt: skip
    assert "SYNTHETIC" in synth.output
    out = data_dir / "run"
    invoke(
        "train", "ct_head", "--data", str(data), "--preset", "tiny", "--size", "32",
        "--epochs", "1", "--batch-size", "16", "--out", str(out),
    )  # fmt: skip
    meta = load_checkpoint(out / "best.pt")["meta"]
    assert meta["labels"] == list(CT_HEAD_LABELS) and len(meta["thresholds"]) == 6
    run = MlflowClient().get_run(meta["training_run_id"])
    assert run.data.params["task"] == "ct_head" and "val_study_mean_auroc" in run.data.metrics

    report = json.loads((out / "evaluation" / "report.json").read_text())
    metrics = report["metrics"]
    assert report["task"] == "ct_head" and report["synthetic"] is True
    assert set(metrics["classification"]["per_label"]) == set(CT_HEAD_LABELS)
    assert set(metrics["slice_classification"]["per_label"]) == set(CT_HEAD_LABELS)
    assert metrics["rsna_weighted_log_loss_slice"] > 0
    assert set(report["fairness"]["attributes"]) == {"sex", "age_band"}
    assert "pointing_game" in metrics["localization"]

    evaluated = invoke(
        "evaluate", "ct_head", "--checkpoint", str(out / "best.pt"), "--data", str(data),
        "--split", "all", "--out", str(data_dir / "eval"), "--min-group-size", "2",
    )  # fmt: skip
    assert "report:" in evaluated.output
    markdown = (data_dir / "eval" / "report.md").read_text()
    assert "SYNTHETIC" in markdown and "Pointing game" in markdown

    repository = data_dir / "repo"
    exported = invoke("export", "ct_head", "--checkpoint", str(out / "best.pt"),
                      "--repository", str(repository))  # fmt: skip
    assert "parity: LOGITS" in exported.output
    config = parse_config((repository / "ct_head_net" / "config.pbtxt").read_text())
    parameters = config_parameters(config)
    assert parameters["training_run_id"] == meta["training_run_id"]
    assert parameters["labels"] == ",".join(CT_HEAD_LABELS)
    assert parameters["windows"] == "brain:40:80,subdural:80:200,bone:600:2800"
    assert [i.name for i in config.input] == ["SLICES"] and list(config.input[0].dims) == [
        9,
        32,
        32,
    ]
    assert [o.name for o in config.output] == ["LOGITS", "CAMS"]


# (labels, probabilities, expected): per row sum_k w_k * BCE_k / sum_k w_k, w = (2,1,1,1,1,1).
LOG_LOSS_CASES = [
    ([[1, 0, 0, 0, 0, 0]], [[0.5] * 6], np.log(2)),
    ([[1, 1, 0, 0, 0, 0]], [[np.exp(-1), np.exp(-1), 0.5, 0.5, 0.5, 0.5]], (3 + 4 * np.log(2)) / 7),
    ([[0] * 6, [1] * 6], [[0.0] * 6, [1.0] * 6], -np.log(1 - 1e-7)),
]


@pytest.mark.parametrize(("labels", "probs", "expected"), LOG_LOSS_CASES)
def test_rsna_weighted_log_loss(labels, probs, expected) -> None:
    assert weighted_log_loss(np.array(labels), np.array(probs)) == pytest.approx(expected, rel=1e-6)
