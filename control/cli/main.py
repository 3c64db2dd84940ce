"""The ``medvision`` command line. Sub-commands import their heavy modules only when run,
so ``medvision --help`` stays fast and never imports torch."""

from __future__ import annotations

import typer

from control.cli import audit, db, dicom, ingest, openapi, serve, storage, triton, users, worker
from export import cli as export_cli
from training import cli as training_cli

app = typer.Typer(
    name="medvision",
    help="MedVision: radiology AI platform (control plane, ingest, audit, models).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("ingest")(ingest.ingest)
app.command("openapi")(openapi.openapi)
app.add_typer(users.app, name="users")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.add_typer(storage.app, name="storage")
app.add_typer(triton.app, name="triton")
app.add_typer(dicom.app, name="dicom")
# Training commands live in the training package; their modules import torch only when run.
app.add_typer(training_cli.data_app, name="data")
app.add_typer(training_cli.train_app, name="train")
app.add_typer(training_cli.evaluate_app, name="evaluate")
app.add_typer(export_cli.app, name="export")


if __name__ == "__main__":
    app()
