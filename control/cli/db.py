"""``medvision db``: schema migrations."""

from __future__ import annotations

import typer

from control.cli.common import settings_or_exit

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from control.db.migrate import current
    from control.db.migrate import upgrade as run_upgrade

    settings = settings_or_exit()
    run_upgrade(settings, revision)
    typer.echo(f"database at revision {current(settings)}")


@app.command("current")
def show_current() -> None:
    """Print the schema revision of the database."""
    from control.db.migrate import current

    typer.echo(current(settings_or_exit()) or "empty (no migrations applied)")
