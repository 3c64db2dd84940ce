"""A tiny regression task for exercising the training loop (importable by torchrun)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset


class ToyDataset(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class ToyTask:
    name = "toy"
    monitor = "neg_mse"

    def __init__(self) -> None:
        self.val = ToyDataset(32, seed=1)

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Linear(4, 1)

    def train_dataset(self) -> ToyDataset:
        return ToyDataset()

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        with torch.no_grad():
            mse = nn.functional.mse_loss(model(self.val.x.to(device)).squeeze(-1), self.val.y)
        return {"neg_mse": -float(mse)}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"task": "toy"}


if __name__ == "__main__":
    # Entry point for the torchrun test: train and write the final weights per rank.
    from training.engine.distributed import init_distributed, shutdown
    from training.engine.trainer import TrainConfig, fit

    out = Path(sys.argv[1])
    context = init_distributed("cpu")
    model, _best, history = fit(
        ToyTask(),
        TrainConfig(epochs=3, batch_size=8, lr=0.05, out_dir=out, precision="fp32"),
        context,
    )
    torch.save(model.state_dict(), out / f"rank{context.rank}.pt")
    shutdown(context)
