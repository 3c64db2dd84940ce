"""The shared training loop: schedule, precision, checkpoints, resume and DDP."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

from tests.training.toy_task import ToyTask
from training.engine.checkpoint import load_checkpoint, save_checkpoint
from training.engine.distributed import init_distributed
from training.engine.precision import choose_precision
from training.engine.schedule import warmup_cosine
from training.engine.trainer import TrainConfig, fit


def test_warmup_then_cosine():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=4, total_steps=20, min_lr_ratio=0.0)
    rates = []
    for _ in range(20):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))
    assert rates[-1] < 0.05


def test_precision_policy():
    cpu = torch.device("cpu")
    assert choose_precision("auto", cpu).dtype is None
    assert choose_precision("bf16", cpu).dtype == torch.bfloat16
    assert not choose_precision("bf16", cpu).needs_scaler
    with pytest.raises(ValueError, match="CUDA"):
        choose_precision("fp16", cpu)


def test_checkpoint_round_trip_and_rejects_foreign_files(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "meta": {"task": "x"}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a MedVision checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_fit_learns_and_keeps_the_best_checkpoint(tmp_path):
    context = init_distributed("cpu")
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, out_dir=tmp_path, precision="fp32")
    _model, best, history = fit(ToyTask(), config, context)
    assert history[-1].val["neg_mse"] > history[0].val["neg_mse"]
    assert history[-1].loss < history[0].loss
    assert 0.0 <= history[0].data_wait_fraction < 1.0
    state = load_checkpoint(best)
    assert state["meta"]["task"] == "toy"
    assert state["best_score"] == max(h.val["neg_mse"] for h in history)


def test_resume_continues_where_it_stopped(tmp_path):
    context = init_distributed("cpu")
    first = TrainConfig(epochs=2, batch_size=8, lr=0.05, out_dir=tmp_path, precision="fp32")
    fit(ToyTask(), first, context)
    resumed = TrainConfig(
        epochs=4, batch_size=8, lr=0.05, out_dir=tmp_path, precision="fp32",
        resume=tmp_path / "last.pt",
    )  # fmt: skip
    _, _, history = fit(ToyTask(), resumed, context)
    assert [h.epoch for h in history] == [2, 3]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_same_command_runs_under_torchrun_with_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "tests.training.toy_task", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    # DDP keeps replicas identical; both trained on different shards of the data.
    for key in rank0:
        assert torch.allclose(rank0[key], rank1[key])
    assert (tmp_path / "best.pt").exists()
