"""``medvision export cxr|brats|ct_head``: checkpoint → Triton model repository (+ MLflow registry).

Torch, onnx and MLflow are imported only when a command runs, so mounting this app keeps
``medvision --help`` light.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import typer

from export.specs import EXPORT_SPECS, ExportSpec
from training.command import CliOption, command

app = typer.Typer(
    help="Export a trained model into the Triton model repository.", no_args_is_help=True
)

CheckpointOption = typer.Option(None, "--checkpoint", help="checkpoint file (best.pt)")
MlflowModelOption = typer.Option(
    None, "--mlflow-model", help="registered checkpoint, models:/NAME/VERSION"
)
RepositoryOption = typer.Option(
    Path("model_repository"), "--repository", help="Triton model repository folder"
)
FormatOption = typer.Option(
    "python-onnx",
    "--format",
    help="onnx (ONNX Runtime backend), tensorrt (FP16 plan, needs a CUDA GPU) or "
    "python-onnx (Python backend running onnxruntime)",
)
VersionOption = typer.Option(None, "--version", help="model version (default: next free)")
ForceOption = typer.Option(False, "--force", help="replace an existing version")
RegisterOption = typer.Option(
    None, "--register", help="register the exported model in MLflow under this name"
)
GpuOption = typer.Option(
    None, "--gpu/--cpu", help="instance kind (default: GPU except for python-onnx)"
)
MaxBatchOption = typer.Option(8, "--max-batch-size", help="Triton max_batch_size")
InstancesOption = typer.Option(1, "--instance-count", help="model instances per device")
ParityDicomOption = typer.Option(
    None, "--parity-dicom", help="radiograph DICOM also used for the parity check (cxr)"
)
DriftDicomOption = typer.Option(
    None,
    "--drift-dicom",
    help="validation radiograph DICOM (repeatable) whose outputs and input statistics "
    "become the version's drift reference, drift_reference.json (cxr)",
)


def _run(
    spec: ExportSpec,
    *,
    checkpoint: Path | None,
    mlflow_model: str | None,
    repository: Path,
    format: str,
    version: int | None,
    force: bool,
    register: str | None,
    gpu: bool | None,
    max_batch_size: int,
    instance_count: int,
    parity_dicom: list[Path] | None = None,
    drift_dicom: list[Path] | None = None,
) -> None:
    from export.repository import FORMATS, ExportError, export_model

    try:
        if format not in FORMATS:
            raise ExportError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
        real_inputs = None
        if parity_dicom:
            from export.onnx_export import load_network

            if checkpoint is None:
                raise ExportError("--parity-dicom needs --checkpoint")
            assert spec.real_input is not None, "the option exists only then"
            _model, meta = load_network(spec.kind, checkpoint)
            real_inputs = [spec.real_input(path, meta) for path in parity_dicom]
        drift_samples = None
        if drift_dicom:
            from export.onnx_export import load_network

            if checkpoint is None:
                raise ExportError("--drift-dicom needs --checkpoint")
            assert spec.drift_samples is not None, "the option exists only then"
            drift_samples = spec.drift_samples(*load_network(spec.kind, checkpoint), drift_dicom)
        result = export_model(
            spec.kind, checkpoint=checkpoint, mlflow_model=mlflow_model, repository=repository,
            format=format,  # type: ignore[arg-type]
            version=version, force=force, register=register, gpu=gpu,
            max_batch_size=max_batch_size, instance_count=instance_count,
            real_inputs=real_inputs, drift_samples=drift_samples,
        )  # fmt: skip
    except (ExportError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"exported {result.model_name} version {result.version}: {result.model_version_label}"
    )
    typer.echo(f"parity: {result.parity.summary()}")
    for path in result.paths:
        typer.echo(f"wrote {path}")
    for path in result.updated_configs:
        typer.echo(f"updated parameters in {path}")
    if result.registered is not None:
        registered = result.registered
        typer.echo(
            f"registered {registered.name} version {registered.version} ({registered.source})"
        )


#: The options of every ``medvision export KIND`` command.
COMMON_OPTIONS: tuple[CliOption, ...] = (
    ("checkpoint", Path | None, CheckpointOption),
    ("mlflow_model", str | None, MlflowModelOption),
    ("repository", Path, RepositoryOption),
    ("format", str, FormatOption),
    ("version", int | None, VersionOption),
    ("force", bool, ForceOption),
    ("register", str | None, RegisterOption),
    ("gpu", bool | None, GpuOption),
    ("max_batch_size", int, MaxBatchOption),
    ("instance_count", int, InstancesOption),
)


def _export_command(spec: ExportSpec) -> Callable[..., None]:
    """The ``medvision export KIND`` command of ``spec``: the common options, plus
    ``--parity-dicom`` / ``--drift-dicom`` where the spec can use DICOM inputs."""
    options = list(COMMON_OPTIONS)
    if spec.real_input is not None:
        options.append(("parity_dicom", list[Path] | None, ParityDicomOption))
    if spec.drift_samples is not None:
        options.append(("drift_dicom", list[Path] | None, DriftDicomOption))
    return command(options, functools.partial(_run, spec), spec.summary)


for _spec in EXPORT_SPECS.values():
    app.command(_spec.kind)(_export_command(_spec))


@app.command("demo")
def demo(repository: Path = RepositoryOption) -> None:
    """Build synthetic demo models (not clinical) for any network the repository lacks."""
    from export.demo import BANNER, ensure_demo_models

    built = ensure_demo_models(repository)
    if built:
        typer.secho(f"built {', '.join(built)} — {BANNER}", fg=typer.colors.YELLOW)
    else:
        networks = ", ".join(spec.network for spec in EXPORT_SPECS.values())
        typer.echo(f"{networks} already exported; nothing to build")
