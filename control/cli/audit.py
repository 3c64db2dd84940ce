"""``medvision audit``: verify the hash-chained audit log."""

from __future__ import annotations

import json

import anyio
import typer

from control.cli.common import session_scope, settings_or_exit

app = typer.Typer(help="Audit log tools.", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Recompute the chain. Exit 0 when intact, 1 naming the first broken entry."""
    from control.domain.audit.chain import VerifyReport
    from control.domain.audit.chain import verify as verify_chain

    settings = settings_or_exit()

    async def run() -> VerifyReport:
        async with session_scope(settings) as session:
            return await verify_chain(session)

    report = anyio.run(run)
    typer.echo(
        json.dumps(
            {
                "ok": report.ok,
                "entries": report.entries,
                "first_broken": report.first_broken,
                "reason": report.reason,
            }
        )
    )
    if report.ok:
        typer.secho(f"audit chain intact: {report.entries} entries", fg=typer.colors.GREEN)
    else:
        typer.secho(
            f"audit chain BROKEN at entry {report.first_broken}: {report.reason}",
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
