"""``medvision storage``: object-store maintenance."""

from __future__ import annotations

import anyio
import typer

from control.cli.common import session_scope, settings_or_exit

app = typer.Typer(help="Object store maintenance.", no_args_is_help=True)


@app.command("reconcile")
def reconcile(
    grace_s: float = typer.Option(3600, min=0, help="keep unreferenced objects younger than this"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report orphans without removing"),
) -> None:
    """Remove stored objects no database row references (leftovers of a killed upload)."""
    from control.storage import build_store
    from control.storage.reconcile import reconcile as run_reconcile

    settings = settings_or_exit()

    async def run() -> None:
        store = build_store(settings)
        async with session_scope(settings) as session:
            report = await run_reconcile(session, store, grace_s=grace_s, dry_run=dry_run)
        verb = "found" if dry_run else "removed"
        typer.echo(
            f"{report.scanned} objects scanned, {len(report.orphans)} orphans {verb}, "
            f"{report.too_young} unreferenced but younger than {grace_s:g} s kept"
        )

    anyio.run(run)
