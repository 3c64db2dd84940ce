"""Shared helpers for CLI commands: settings with friendly errors, database sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings, load_settings
from control.errors import MedVisionError


def settings_or_exit() -> Settings:
    """Validated settings, or a clear message and exit status 2."""
    try:
        return load_settings()
    except MedVisionError as exc:
        typer.secho(exc.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@asynccontextmanager
async def session_scope(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on a migrated database; the engine is disposed afterwards."""
    import anyio.to_thread

    from control.db.engine import create_engine, create_session_factory
    from control.db.migrate import upgrade

    await anyio.to_thread.run_sync(upgrade, settings)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def fail(error: MedVisionError) -> typer.Exit:
    """Print ``error`` with its code and return the exit to raise."""
    typer.secho(f"error [{error.code}]: {error.message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)
