"""The ``medvision`` command line. Sub-commands import their heavy modules only when run,
so ``medvision --help`` stays fast and never imports torch."""

from __future__ import annotations

import typer

from control.cli import audit, db, ingest, serve, users

app = typer.Typer(
    name="medvision",
    help="MedVision: radiology AI platform (control plane, ingest, audit, models).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("ingest")(ingest.ingest)
app.add_typer(users.app, name="users")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")


if __name__ == "__main__":
    app()
