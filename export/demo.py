"""Synthetic demo models for a fresh checkout: built once, loudly labelled as not clinical.

``make run`` needs every ensemble loaded. When the model repository has no exported
network yet, this trains small models on synthetic data on the CPU (a few minutes) and
exports them, so the stack works end to end out of the box.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("medvision.demo")

#: The CT head demo: synthetic RSNA-layout data, task and training settings (about 80 s on
#: two CPU cores; docs/ct_head.md records what they reach on the held-out split).
DEMO_CT_DATA: dict[str, Any] = {"n_studies": 60, "size": 64, "seed": 0}
DEMO_CT_TASK: dict[str, Any] = {"preset": "demo", "size": 64, "context": 1}
DEMO_CT_TRAINING: dict[str, Any] = {
    "epochs": 5, "batch_size": 32, "lr": 3e-3, "precision": "fp32", "workers": 0, "seed": 0,
}  # fmt: skip

BANNER = (
    "SYNTHETIC DEMO MODELS: trained for a minute on synthetic data by `medvision export "
    "demo`. They are NOT clinical models and their outputs mean nothing medically."
)


def has_network(repository: Path, name: str) -> bool:
    """True when ``repository/name`` holds a config and at least one exported version."""
    model_dir = repository / name
    if not (model_dir / "config.pbtxt").is_file():
        return False
    return any(
        child.is_dir() and child.name.isdigit() and any(child.glob("model.*"))
        for child in model_dir.iterdir()
    )


def ensure_demo_models(repository: Path, work_dir: Path | None = None) -> list[str]:
    """Train and export whichever of ``cxr_net`` / ``brats_net`` / ``ct_head_net`` is
    missing; returns the names built (empty when all exist). For networks already exported, the
    pre/post configs are brought back in line with them."""
    from export.repository import export_model, sync_pre_post_configs
    from export.triton_config import ModelKind
    from training.data.synth import BratsSynthConfig, CxrSynthConfig, synth_brats, synth_cxr
    from training.data.synth_ct import CtSynthConfig, synth_ct
    from training.tasks.brats import BratsTaskConfig
    from training.tasks.ct_head import CtHeadTaskConfig
    from training.tasks.cxr import CxrTaskConfig
    from training.tasks.runner import run_training

    data_dir = Path(os.environ.get("MEDVISION_DATA_DIR", "./var")).resolve()
    work = work_dir or data_dir / "demo-models"
    built: list[str] = []
    exported: tuple[tuple[ModelKind, str], ...] = (
        ("cxr", "cxr_net"),
        ("brats", "brats_net"),
        ("ct_head", "ct_head_net"),
    )
    for kind, network in exported:
        if has_network(repository, network):
            sync_pre_post_configs(repository, kind)
    if not has_network(repository, "cxr_net"):
        print(BANNER, flush=True)
        data = work / "synthetic-cxr"
        if not (data / "Data_Entry_2017.csv").exists():
            synth_cxr(data, CxrSynthConfig(n_images=600, size=128, seed=0))
        summary = run_training(
            "cxr", CxrTaskConfig(data=data, preset="demo", size=128, hflip=False),
            epochs=12, batch_size=32, lr=3e-3, precision="fp32", workers=1, seed=0,
            out=work / "cxr-run", resume=None, register=None, device="cpu",
        )  # fmt: skip
        export_model("cxr", checkpoint=Path(summary["checkpoint"]), repository=repository)
        built.append("cxr_net")
    if not has_network(repository, "brats_net"):
        print(BANNER, flush=True)
        data = work / "synthetic-brats"
        if not (data / "participants.csv").exists():
            synth_brats(data, BratsSynthConfig(n_cases=12, shape=(32, 32, 32), seed=0))
        summary = run_training(
            "brats", BratsTaskConfig(data=data, preset="default", roi=32),
            epochs=15, batch_size=2, lr=2e-3, precision="fp32", workers=1, seed=0,
            out=work / "brats-run", resume=None, register=None, device="cpu",
        )  # fmt: skip
        export_model("brats", checkpoint=Path(summary["checkpoint"]), repository=repository)
        built.append("brats_net")
    if not has_network(repository, "ct_head_net"):
        print(BANNER, flush=True)
        data = work / "synthetic-ct"
        if not (data / "stage_2_train.csv").exists():
            synth_ct(data, CtSynthConfig(**DEMO_CT_DATA))
        summary = run_training(
            "ct_head", CtHeadTaskConfig(data=data, **DEMO_CT_TASK), **DEMO_CT_TRAINING,
            out=work / "ct-head-run", resume=None, register=None, device="cpu",
        )  # fmt: skip
        export_model("ct_head", checkpoint=Path(summary["checkpoint"]), repository=repository)
        built.append("ct_head_net")
    return built
