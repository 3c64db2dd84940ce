"""Export a checkpoint into a Triton model repository: the whole pipeline, written atomically.

Layout written (``<net>`` is the network model of the kind's export spec, e.g. ``cxr_net``)::

    <repository>/<net>/config.pbtxt
    <repository>/<net>/<version>/model.onnx   (+ model.py: python-onnx; model.plan: tensorrt)

Everything is built in a staging folder inside ``<repository>/<net>/`` (Triton ignores
non-numeric folders there) and renamed into place, so a failed export leaves the
repository as it was. Afterwards the ``parameters`` of the ensemble's pre/post-processing
models (those the export spec writes, e.g. ``cxr_preprocess`` and ``cxr_postprocess``) are
updated to match the exported network.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from export.parity import ParityError, ParityReport
from export.registry import RegisteredExport
from export.specs import ModelKind, export_spec
from export.triton_config import (
    ExportFormat,
    config_parameters,
    network_config,
    parse_config,
    pre_post_parameters,
    update_config_parameters,
)

TEMPLATE = Path(__file__).parent / "templates" / "onnx_runner.py"
FORMATS: tuple[str, ...] = ("onnx", "tensorrt", "python-onnx")
TENSORRT_MESSAGE = "TensorRT export needs a CUDA GPU and the tensorrt package"


class ExportError(RuntimeError):
    """An export that cannot or must not proceed; the message says why."""


@dataclass
class ExportResult:
    """What an export wrote."""

    kind: ModelKind
    model_name: str
    version: int
    model_dir: Path
    paths: list[Path]
    parity: ParityReport
    updated_configs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registered: RegisteredExport | None = None
    model_version_label: str = ""
    training_run_id: str | None = None


def next_version(model_dir: Path) -> int:
    """One more than the largest numeric version folder in ``model_dir`` (1 if none)."""
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


class _Steps:
    """A rich progress display with one line per slow step (silent when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=Console(stderr=True),
            )  # fmt: skip

    def __enter__(self) -> _Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Show ``description`` while the block runs, then mark it done."""
        if self.progress is None:
            yield
            return
        task = self.progress.add_task(description, total=1)
        yield
        self.progress.update(task, completed=1, description=f"{description} [green]done")


def sync_pre_post_configs(repository: Path, kind: ModelKind) -> list[Path]:
    """Rewrite the pre/post models' ``parameters`` from the exported network's config.

    The committed pre/post configs hold placeholders until an export fills them in; after
    they are reset (a checkout, a pull) the exported network would be served with the wrong
    input size or thresholds. The network's own config carries everything needed.
    """
    spec = export_spec(kind)
    config = parse_config((repository / spec.network / "config.pbtxt").read_text())
    parameters = config_parameters(config)
    meta: dict[str, Any] = {
        "thresholds": [float(t) for t in parameters["thresholds"].split(",")],
        **spec.meta_from_parameters(parameters),
    }
    sw_batch_size = min(4, max(1, config.max_batch_size))
    updated, _missing = update_pre_post_configs(repository, kind, meta, sw_batch_size=sw_batch_size)
    return updated


def update_pre_post_configs(
    repository: Path, kind: ModelKind, meta: dict[str, Any], *, sw_batch_size: int
) -> tuple[list[Path], list[str]]:
    """Write the network-dependent ``parameters`` into the pre/post models' configs.

    Returns the configs updated and a warning for each one missing from ``repository``
    (so export also works on an empty repository).
    """
    updated: list[Path] = []
    warnings: list[str] = []
    for model, parameters in pre_post_parameters(kind, meta, sw_batch_size=sw_batch_size).items():
        config_path = repository / model / "config.pbtxt"
        if not config_path.is_file():
            warnings.append(f"{config_path} not found: its parameters were not updated")
            continue
        update_config_parameters(config_path, parameters)
        updated.append(config_path)
    return updated, warnings


def _resolve_checkpoint(
    checkpoint: Path | None, mlflow_model: str | None, scratch: Path
) -> tuple[Path, str | None]:
    if (checkpoint is None) == (mlflow_model is None):
        raise ExportError("give exactly one of --checkpoint PATH or --mlflow-model models:/NAME/V")
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise ExportError(f"checkpoint {checkpoint} does not exist")
        return checkpoint, None
    from export.registry import fetch_checkpoint

    assert mlflow_model is not None
    try:
        fetched = fetch_checkpoint(mlflow_model, scratch)
    except (ValueError, FileNotFoundError) as error:
        raise ExportError(str(error)) from error
    except Exception as error:  # MLflow raises its own exception types
        raise ExportError(f"could not fetch {mlflow_model} from MLflow: {error}") from error
    return fetched.path, fetched.run_id


def _commit(staging: Path, model_dir: Path, version: int) -> None:
    """Rename the staged version folder and config into ``model_dir``, replacing old ones."""
    target = model_dir / str(version)
    if target.exists():
        target.rename(staging / "replaced")
    (staging / str(version)).rename(target)
    (staging / "config.pbtxt").replace(model_dir / "config.pbtxt")


def export_model(
    kind: ModelKind,
    *,
    checkpoint: Path | None = None,
    mlflow_model: str | None = None,
    repository: Path,
    format: ExportFormat = "python-onnx",
    version: int | None = None,
    force: bool = False,
    register: str | None = None,
    progress: bool = True,
    gpu: bool | None = None,
    max_batch_size: int = 8,
    instance_count: int = 1,
    real_inputs: Sequence[npt.NDArray[Any]] | None = None,
    atol: float = 1e-4,
    drift_samples: Sequence[Mapping[str, float]] | None = None,
) -> ExportResult:
    """Export a checkpoint into ``repository`` as ``cxr_net`` / ``brats_net`` / ``ct_head_net``
    version ``version``.

    The checkpoint comes from a file or from the MLflow registry (``models:/NAME/VERSION``,
    which must hold ``best.pt``). ``version`` defaults to the next free one; an existing
    version folder is only replaced with ``force``. The ONNX graph must match PyTorch within
    ``atol`` on random (and ``real_inputs``) inputs. ``gpu`` defaults to true except for
    ``python-onnx``. With ``register``, the exported model is logged to MLflow and
    registered under that name. Raises :class:`ExportError` (nothing written) when the
    export cannot proceed, including ``tensorrt`` without a CUDA GPU and TensorRT.
    ``drift_samples`` (one feature dict per validation inference, see
    :mod:`export.drift_reference`) become the version's drift reference.
    """
    from export.onnx_export import (
        build_tensorrt_plan,
        export_onnx,
        load_network,
        onnx_output_dims,
        tensorrt_available,
    )
    from export.parity import check_parity

    try:
        spec = export_spec(kind)
    except ValueError as error:
        raise ExportError(str(error)) from error
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    use_gpu = format != "python-onnx" if gpu is None else gpu
    if format == "tensorrt":
        missing = tensorrt_available()
        if missing is not None:
            raise ExportError(f"{TENSORRT_MESSAGE} ({missing}); nothing was written")
        if not use_gpu:
            raise ExportError("a TensorRT plan runs on a GPU only: drop --cpu")
    if max_batch_size < 1:
        raise ExportError("--max-batch-size must be at least 1")
    model_name = spec.network
    model_dir = repository / model_name
    if version is None:
        version = next_version(model_dir)
    elif version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    if (model_dir / str(version)).exists() and not force:
        raise ExportError(
            f"{model_dir / str(version)} already exists; choose another --version or pass --force"
        )

    with (
        tempfile.TemporaryDirectory(prefix="medvision-export-") as scratch,
        _Steps(progress) as steps,
    ):
        with steps.step("Loading checkpoint"):
            checkpoint_path, registry_run_id = _resolve_checkpoint(
                checkpoint, mlflow_model, Path(scratch)
            )
            try:
                model, meta = load_network(kind, checkpoint_path)
            except (ValueError, KeyError, RuntimeError) as error:
                raise ExportError(f"cannot load {checkpoint_path}: {error}") from error
        run_id = registry_run_id or meta.get("training_run_id") or meta.get("run_id")
        label = f"{kind}-{version} ({meta.get('preset', 'unknown preset')})"
        created_model_dir = not model_dir.exists()
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        try:
            version_dir = staging / str(version)
            onnx_path = version_dir / "model.onnx"
            with steps.step(f"Exporting ONNX ({model_name})"):
                export_onnx(model, kind, meta, onnx_path)
                if spec.cams:
                    meta["cam_size"] = list(onnx_output_dims(onnx_path)["CAMS"][1:])
            with steps.step("Checking ONNX parity with PyTorch"):
                try:
                    parity = check_parity(
                        model, kind, onnx_path, meta, real_inputs=real_inputs, atol=atol
                    )
                except ParityError as error:
                    raise ExportError(f"parity check failed: {error}") from error
            if format == "python-onnx":
                shutil.copyfile(TEMPLATE, version_dir / "model.py")
            elif format == "tensorrt":
                with steps.step("Building TensorRT FP16 plan"):
                    build_tensorrt_plan(
                        onnx_path, version_dir / "model.plan", kind, meta,
                        max_batch_size=max_batch_size,
                    )  # fmt: skip
                    onnx_path.rename(staging / "model.onnx")
            config_text = network_config(
                kind, meta, format=format, version=version, max_batch_size=max_batch_size,
                instance_count=instance_count, gpu=use_gpu, run_id=run_id,
                model_version_label=label,
            )  # fmt: skip
            (staging / "config.pbtxt").write_text(config_text)
            _commit(staging, model_dir, version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created_model_dir and not any(model_dir.iterdir()):
                model_dir.rmdir()
        final_dir = model_dir / str(version)
        paths = [
            model_dir / "config.pbtxt",
            *sorted(p for p in final_dir.rglob("*") if p.is_file()),
        ]
        if drift_samples:
            # The version's drift reference: next to config.pbtxt (what the control plane
            # reads), in the version folder (registered with it) and in an active MLflow run.
            from export.drift_reference import build_reference, log_reference, write_reference

            reference = build_reference(model_name, label, drift_samples)
            paths.append(write_reference(model_dir, reference))
            log_reference(write_reference(final_dir, reference), model_name)
        updated, warnings = update_pre_post_configs(
            repository, kind, meta, sw_batch_size=min(4, max_batch_size)
        )
        result = ExportResult(
            kind=kind, model_name=model_name, version=version, model_dir=model_dir, paths=paths,
            parity=parity, updated_configs=updated, warnings=warnings,
            model_version_label=label, training_run_id=run_id,
        )  # fmt: skip
        if register:
            from export.registry import register_export

            with steps.step(f"Registering {register} in MLflow"):
                result.registered = register_export(
                    register, model_name=model_name, config_path=model_dir / "config.pbtxt",
                    version_dir=final_dir,
                    params={"kind": kind, "format": format, "triton_version": version,
                            "model_version": label, "training_run_id": run_id or "",
                            "source_checkpoint": mlflow_model or str(checkpoint_path),
                            "parity": parity.summary()},
                )  # fmt: skip
    return result
