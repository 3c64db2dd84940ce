"""``medvision ingest``: import DICOM and NIfTI files or folders from the shell."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from control.cli.common import session_scope, settings_or_exit
from control.errors import MedVisionError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class _Tally:
    new: int = 0
    existing: int = 0
    studies: set[str] = field(default_factory=set)


def _uploads(paths: list[Path]) -> Iterator[list[Path]]:
    """Upload units: each DICOM file alone; the NIfTI files of one folder together."""
    for path in paths:
        if path.is_dir():
            for directory, _subdirs, names in sorted(os.walk(path)):
                files = sorted(Path(directory) / name for name in names)
                nifti = [f for f in files if f.name.lower().endswith(NIFTI_SUFFIXES)]
                if nifti:
                    yield nifti
                yield from ([f] for f in files if f not in nifti and not f.name.startswith("."))
        elif path.is_file():
            yield [path]
        else:
            raise typer.BadParameter(f"{path} does not exist")


def ingest(
    paths: list[Path] = typer.Argument(..., help="files or folders (searched recursively)"),
    race_ethnicity: str | None = typer.Option(None, help="self-reported, for fairness reports"),
) -> None:
    """De-identify and store studies, exactly as an upload through the API would."""
    from control.domain.audit.chain import Actor
    from control.domain.studies.service import IngestService
    from control.storage import build_store

    settings = settings_or_exit()
    units = list(_uploads(paths))
    console = Console(stderr=True)
    actor = Actor(username=f"cli:{os.environ.get('USER', 'unknown')}", role="cli")
    failures: list[str] = []
    tally = _Tally()

    async def run() -> None:
        store = build_store(settings)
        async with session_scope(settings) as session:
            service = IngestService(session, store, settings, source="cli")
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("ingesting", total=len(units))
                for unit in units:
                    files = [(p.name, p.read_bytes()) for p in unit]
                    try:
                        result = await service.ingest(files, actor, race_ethnicity)
                    except MedVisionError as exc:
                        failures.append(f"{unit[0]}: [{exc.code}] {exc.message}")
                    else:
                        for study in result.studies:
                            tally.new += study.new_instances
                            tally.existing += study.existing_instances
                            tally.studies.add(str(study.study_id))
                    progress.advance(task)

    anyio.run(run)
    typer.echo(
        f"{len(tally.studies)} studies, {tally.new} new instances, "
        f"{tally.existing} already stored, {len(failures)} rejected"
    )
    for line in failures:
        typer.secho(line, fg=typer.colors.RED, err=True)
    if failures:
        raise typer.Exit(1)
