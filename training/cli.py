"""``medvision data``, ``medvision train`` and ``medvision evaluate``.

Torch and MONAI are imported inside the commands, so ``medvision --help`` stays light.
The same ``train`` command runs on one CPU, one GPU, or many GPUs under torchrun:
``torchrun --standalone --nproc-per-node 4 -m control.cli.main train cxr --data DIR``.
"""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Datasets: synthetic data in the real layouts.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model (logged to MLflow).", no_args_is_help=True)
evaluate_app = typer.Typer(
    help="Evaluate a checkpoint (metrics, fairness, report).", no_args_is_help=True
)

SYNTH_BANNER = "SYNTHETIC data (made by `medvision data synth`), not patient data"


@data_app.command("synth")
def synth(
    kind: str = typer.Argument(..., help="cxr, brats or ct"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    n: int = typer.Option(0, help="images (cxr), cases (brats) or studies (ct); 0 = default"),
    size: int = typer.Option(128, help="cxr image size in pixels"),
    shape: int = typer.Option(48, help="brats volume edge in voxels"),
    matrix: int = typer.Option(64, help="ct slice matrix in pixels"),
    slices: str = typer.Option("16-24", help="ct slices per series, MIN-MAX"),
    weak_group: str | None = typer.Option(
        None, help="ATTRIBUTE=VALUE whose signal is weaker, e.g. race='Group B' or sex=F"
    ),
    seed: int = typer.Option(0),
) -> None:
    """Write a synthetic dataset in the NIH ChestX-ray14 (cxr), BraTS 2023 (brats) or RSNA
    Intracranial Hemorrhage (ct) layout."""
    from training.data.synth import BratsSynthConfig, CxrSynthConfig, synth_brats, synth_cxr
    from training.data.synth_ct import CtSynthConfig, synth_ct

    weak = _weak_group(weak_group)
    if kind == "cxr":
        config = CxrSynthConfig(
            **({"n_images": n} if n else {}), size=size, weak_group=weak, seed=seed
        )
        summary = synth_cxr(out, config)
    elif kind == "brats":
        config_b = BratsSynthConfig(
            **({"n_cases": n} if n else {}), shape=(shape, shape, shape), weak_group=weak, seed=seed
        )
        summary = synth_brats(out, config_b)
    elif kind == "ct":
        low, _, high = slices.partition("-")
        if not (low.isdigit() and (high or low).isdigit()):
            raise typer.BadParameter("--slices must look like MIN-MAX, e.g. 16-24")
        config_c = CtSynthConfig(
            **({"n_studies": n} if n else {}), size=matrix, min_slices=int(low),
            max_slices=int(high or low), weak_group=weak, seed=seed,
        )  # fmt: skip
        summary = synth_ct(out, config_c)
    else:
        raise typer.BadParameter("kind must be cxr, brats or ct")
    typer.echo(f"{SYNTH_BANNER}: wrote {out}")
    typer.echo(_short(summary))


def _weak_group(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    attribute, sep, group = value.partition("=")
    if not sep or not attribute or not group:
        raise typer.BadParameter("--weak-group must look like ATTRIBUTE=VALUE")
    return attribute.strip(), group.strip()


def _short(summary: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list))


@train_app.command("cxr")
def train_cxr(
    data: Path = typer.Option(..., help="dataset root in the NIH ChestX-ray14 layout"),
    preset: str = typer.Option("densenet121", help="densenet121 (clinical) or tiny (demo/tests)"),
    size: int = typer.Option(224, help="input size (224 or 320 for DenseNet-121)"),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(1e-3),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16 (CUDA)"),
    workers: int = typer.Option(1, help="data loader worker processes (0 = in the main one)"),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None, help="run folder (default $MEDVISION_DATA_DIR/runs/...)"),
    resume: Path | None = typer.Option(None, help="checkpoint to continue from"),
    skip_bad: bool = typer.Option(False, help="skip bad rows/files and count them in the report"),
    register: str | None = typer.Option(None, help="register the model under this MLflow name"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
) -> None:
    """Train the chest X-ray classifier, evaluate it on the test split, log all to MLflow."""
    from training.tasks.cxr import CxrTaskConfig
    from training.tasks.runner import run_training

    task_config = CxrTaskConfig(data=data, preset=preset, size=size, hflip=hflip, skip_bad=skip_bad)
    run_training(
        "cxr", task_config, epochs, batch_size, lr, precision, workers, seed, out, resume,
        register, device,
    )  # fmt: skip


@train_app.command("brats")
def train_brats(
    data: Path = typer.Option(..., help="dataset root in the BraTS 2023 layout"),
    preset: str = typer.Option("default", help="default or tiny (demo/tests)"),
    roi: int = typer.Option(96, help="training crop edge in voxels"),
    epochs: int = typer.Option(50),
    batch_size: int = typer.Option(2),
    lr: float = typer.Option(2e-3),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16 (CUDA)"),
    workers: int = typer.Option(1, help="data loader worker processes (0 = in the main one)"),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None),
    resume: Path | None = typer.Option(None),
    skip_bad: bool = typer.Option(False),
    register: str | None = typer.Option(None),
    device: str = typer.Option("auto"),
) -> None:
    """Train the brain-tumour U-Net, evaluate it on the test split, log all to MLflow."""
    from training.tasks.brats import BratsTaskConfig
    from training.tasks.runner import run_training

    task_config = BratsTaskConfig(data=data, preset=preset, roi=roi, skip_bad=skip_bad)
    run_training(
        "brats", task_config, epochs, batch_size, lr, precision, workers, seed, out, resume,
        register, device,
    )  # fmt: skip


@evaluate_app.command("cxr")
def evaluate_cxr(
    checkpoint: Path = typer.Option(..., help="a checkpoint from `medvision train cxr`"),
    data: Path = typer.Option(..., help="dataset root in the NIH layout"),
    split: str = typer.Option("test", help="test, val or trainval"),
    out: Path = typer.Option(Path("evaluation"), help="report folder"),
    min_group_size: int = typer.Option(
        30, help="smaller fairness groups are reported as too small"
    ),
    skip_bad: bool = typer.Option(False),
) -> None:
    """AUROC with bootstrap CIs, CAM localisation and fairness; JSON + Markdown + plots."""
    from training.tasks.cxr import evaluate_checkpoint

    paths = evaluate_checkpoint(checkpoint, data, split, out, min_group_size, skip_bad)
    typer.echo(f"report: {paths['markdown']}")


@evaluate_app.command("brats")
def evaluate_brats(
    checkpoint: Path = typer.Option(..., help="a checkpoint from `medvision train brats`"),
    data: Path = typer.Option(..., help="dataset root in the BraTS layout"),
    split: str = typer.Option("test", help="test, val or all"),
    out: Path = typer.Option(Path("evaluation")),
    min_group_size: int = typer.Option(10),
    skip_bad: bool = typer.Option(False),
) -> None:
    """Dice and HD95 per region on full volumes (sliding window), with fairness."""
    from training.tasks.brats import evaluate_checkpoint

    paths = evaluate_checkpoint(checkpoint, data, split, out, min_group_size, skip_bad)
    typer.echo(f"report: {paths['markdown']}")


@train_app.command("ct_head")
def train_ct_head(
    data: Path = typer.Option(..., help="dataset root in the RSNA Intracranial Hemorrhage layout"),
    preset: str = typer.Option("densenet121", help="densenet121 (clinical), demo or tiny"),
    size: int = typer.Option(256, help="slice input size in pixels (slices are fitted into it)"),
    context: int = typer.Option(1, help="neighbouring slices each side (2.5-D); 0 = 2-D"),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(32, help="slices per batch"),
    lr: float = typer.Option(1e-3),
    hflip: bool = typer.Option(True, help="random left/right flips"),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16 (CUDA)"),
    workers: int = typer.Option(0, help="data loader worker processes (0 = in the main one)"),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None, help="run folder (default $MEDVISION_DATA_DIR/runs/...)"),
    resume: Path | None = typer.Option(None, help="checkpoint to continue from"),
    skip_bad: bool = typer.Option(False, help="skip bad rows/files and count them in the report"),
    register: str | None = typer.Option(None, help="register the model under this MLflow name"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
) -> None:
    """Train the head CT haemorrhage classifier, evaluate it on the test split, log to MLflow."""
    from training.tasks.ct_head import CtHeadTaskConfig
    from training.tasks.runner import run_training

    task_config = CtHeadTaskConfig(
        data=data, preset=preset, size=size, context=context, hflip=hflip, skip_bad=skip_bad
    )
    run_training(
        "ct_head", task_config, epochs, batch_size, lr, precision, workers, seed, out, resume,
        register, device,
    )  # fmt: skip


@evaluate_app.command("ct_head")
def evaluate_ct_head(
    checkpoint: Path = typer.Option(..., help="a checkpoint from `medvision train ct_head`"),
    data: Path = typer.Option(..., help="dataset root in the RSNA layout"),
    split: str = typer.Option("test", help="test, val, train or all"),
    out: Path = typer.Option(Path("evaluation"), help="report folder"),
    min_group_size: int = typer.Option(10),
    skip_bad: bool = typer.Option(False),
) -> None:
    """AUROC (slice and study) with CIs, RSNA log loss, pointing game, fairness; JSON + Markdown."""
    from training.tasks.ct_head import evaluate_checkpoint

    paths = evaluate_checkpoint(checkpoint, data, split, out, min_group_size, skip_bad)
    typer.echo(f"report: {paths['markdown']}")
