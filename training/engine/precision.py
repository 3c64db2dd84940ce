"""Mixed precision: FP16 autocast with a gradient scaler on CUDA; bf16 or fp32 on CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class PrecisionPolicy:
    """The autocast dtype (None = full fp32) and whether a gradient scaler is needed."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the forward pass under this policy."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for FP16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def choose_precision(requested: Precision, device: torch.device) -> PrecisionPolicy:
    """``auto``: FP16 on CUDA, fp32 on CPU (bf16 on CPU is opt-in: faster only with AMX/AVX512)."""
    if requested == "auto":
        requested = "fp16" if device.type == "cuda" else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return PrecisionPolicy(device.type, dtype)
