"""``medvision users``: bootstrap and manage accounts from the shell."""

from __future__ import annotations

import os

import anyio
import typer

from control.cli.common import fail, session_scope, settings_or_exit
from control.db.models import Role
from control.errors import MedVisionError

app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)


@app.command("create")
def create(
    username: str = typer.Option(..., help="login name (or client_id for integration accounts)"),
    role: Role = typer.Option(..., help="admin, radiologist, integration or mlops"),
    full_name: str | None = typer.Option(None, help="display name"),
) -> None:
    """Create an account. The password comes from MEDVISION_PASSWORD or a prompt."""
    from control.domain.audit.chain import Actor
    from control.domain.users.service import create_user

    settings = settings_or_exit()
    password = os.environ.get("MEDVISION_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )

    async def run() -> str:
        actor = Actor(username=f"cli:{os.environ.get('USER', 'unknown')}", role="cli")
        async with session_scope(settings) as session:
            user = await create_user(session, username, password, role, actor, full_name)
            return str(user.id)

    try:
        user_id = anyio.run(run)
    except MedVisionError as exc:
        raise fail(exc) from None
    typer.echo(f"created {role.value} {username!r} (id {user_id})")
