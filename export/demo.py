"""Synthetic demo models for a fresh checkout: built once, loudly labelled as not clinical.

``make run`` needs every ensemble loaded. When the model repository has no exported
network yet, this trains small models on synthetic data on the CPU (a few minutes) and
exports them, so the stack works end to end out of the box.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("medvision.demo")

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
    """Train and export the network of every exported model (``export.specs``) that the
    repository lacks, from its training task's demo recipe; returns the network names built
    (empty when all exist). For networks already exported, the pre/post configs are brought
    back in line with them."""
    from export.repository import export_model, sync_pre_post_configs
    from export.specs import EXPORT_SPECS
    from training.data.records import SYNTHETIC_MARKER
    from training.tasks.registry import training_task
    from training.tasks.runner import run_training

    data_dir = Path(os.environ.get("MEDVISION_DATA_DIR", "./var")).resolve()
    work = work_dir or data_dir / "demo-models"
    missing = []
    for spec in EXPORT_SPECS.values():
        if has_network(repository, spec.network):
            sync_pre_post_configs(repository, spec.kind)
        else:
            missing.append(spec)
    for spec in missing:
        print(BANNER, flush=True)
        task = training_task(spec.kind)
        recipe = task.demo
        data = work / f"synthetic-{task.dataset}"
        if not (data / SYNTHETIC_MARKER).exists():
            task.synth(data, recipe.data)
        summary = run_training(
            spec.kind, task.code().config(data=data, **recipe.task), **recipe.training,
            out=work / f"{spec.kind}-run", resume=None, register=None, device="cpu",
        )  # fmt: skip
        export_model(spec.kind, checkpoint=Path(summary["checkpoint"]), repository=repository)
    return [spec.network for spec in missing]
