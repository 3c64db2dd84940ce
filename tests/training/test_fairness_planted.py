"""The fairness report finds a subgroup whose signal was planted weaker (here: absent)."""

from __future__ import annotations

import json

import pytest

from training.data.nih import load_nih
from training.data.synth import CxrSynthConfig, synth_cxr
from training.engine.distributed import init_distributed
from training.engine.trainer import TrainConfig, fit
from training.tasks.cxr import CxrTask, CxrTaskConfig, evaluate


@pytest.mark.timeout(600)
def test_fairness_report_shows_the_planted_weak_subgroup(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_DATA_DIR", str(tmp_path / "var"))
    data = tmp_path / "cxr"
    synth_cxr(
        data,
        CxrSynthConfig(
            n_images=480, size=64, weak_group=("race", "Group B"), weak_factor=0.0, seed=3
        ),
    )
    task = CxrTask(CxrTaskConfig(data=data, preset="demo", size=64, hflip=False), seed=0)
    config = TrainConfig(
        epochs=8, batch_size=32, lr=3e-3, out_dir=tmp_path / "run", precision="fp32"
    )
    model, _best, _ = fit(task, config, init_distributed("cpu"))
    test_records, _ = load_nih(data, "test")
    meta = {**task.checkpoint_meta(), "thresholds": [0.5] * 14}
    _, paths = evaluate(model, meta, test_records, tmp_path / "eval", min_group_size=10, n_boot=50)
    report = json.loads(paths["json"].read_text())
    race = report["fairness"]["attributes"]["race"]
    aurocs = {g: v.get("mean_auroc") for g, v in race["groups"].items() if v["status"] == "ok"}
    assert "Group B" in aurocs, race["groups"]
    assert aurocs["Group B"] == min(aurocs.values()), aurocs
    print("mean AUROC by race group:", aurocs)
    gap = race["largest_gap"]["mean_auroc"]
    assert "Group B" in gap["between"]
    assert gap["value"] > 0.05, aurocs
    assert any(flag["metric"] == "mean_auroc" for flag in race["flags"])
    assert "Group B" in paths["markdown"].read_text()
