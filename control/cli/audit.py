"""``medvision audit``: verify the keyed audit chain, write and publish signed checkpoints."""

from __future__ import annotations

import json
from typing import Any

import anyio
import typer

from control.cli.common import session_scope, settings_or_exit

app = typer.Typer(help="Audit log tools.", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Recompute the keyed chain and check it against the latest signed checkpoint in the
    object store. Exit 0 when intact, 1 naming the first broken entry."""
    from control.domain.audit.chain import VerifyReport
    from control.domain.audit.checkpoints import verify_with_checkpoint
    from control.storage import build_store

    settings = settings_or_exit()

    async def run() -> VerifyReport:
        async with session_scope(settings) as session:
            return await verify_with_checkpoint(session, build_store(settings))

    report = anyio.run(run)
    signed = report.checkpoint
    checkpoint: dict[str, Any] | None = None
    if signed is not None:
        checkpoint = {
            "entries": signed.entries,
            "head_id": signed.head_id,
            "head_hash": signed.head_hash,
            "created_at": signed.created_at.isoformat(),
            "key": signed.key,
        }
    typer.echo(
        json.dumps(
            {
                "ok": report.ok,
                "entries": report.entries,
                "first_broken": report.first_broken,
                "reason": report.reason,
                "checkpoint": checkpoint,
            }
        )
    )
    if report.ok:
        against = f", checkpoint of {signed.entries} entries holds" if signed else ""
        typer.secho(f"audit chain intact: {report.entries} entries{against}", fg=typer.colors.GREEN)
    else:
        where = f" at entry {report.first_broken}" if report.first_broken is not None else ""
        typer.secho(f"audit chain BROKEN{where}: {report.reason}", fg=typer.colors.RED)
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain's current head and store it in the object store (the server does this
    at start-up, every MEDVISION_AUDIT_CHECKPOINT_S seconds and at shutdown)."""
    from control.domain.audit.checkpoints import Checkpoint, write_checkpoint
    from control.storage import build_store

    settings = settings_or_exit()

    async def run() -> Checkpoint:
        async with session_scope(settings) as session:
            return await write_checkpoint(session, build_store(settings))

    written = anyio.run(run)
    typer.echo(f"checkpoint of {written.entries} entries written to {written.key}")


@app.command("public-key")
def public_key() -> None:
    """Print the hex Ed25519 public key that verifies the checkpoints (safe to publish)."""
    from control.domain.audit.chain import AuditKeys

    keys = AuditKeys.from_settings(settings_or_exit())
    typer.echo(f"{keys.public_key_hex}  key_id={keys.key_id}")


@app.command("runtime-grants")
def runtime_grants(
    role: str = typer.Argument(..., help="the PostgreSQL role the server runs as"),
) -> None:
    """Print the GRANTs for ROLE (SELECT/INSERT only on audit_log), for the migration role to
    run: `medvision audit runtime-grants medvision_app | psql "$MIGRATION_URL"`."""
    from control.db.roles import runtime_grants as grants

    try:
        statements = grants(role)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(";\n".join(statements) + ";")
