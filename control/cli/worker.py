"""``medvision worker``: run inference jobs from the database queue until stopped."""

from __future__ import annotations

import typer

from control.cli.common import settings_or_exit


def worker() -> None:
    """Run the inference job worker (PostgreSQL: as many as you like; SQLite: one).

    Stops cleanly on Ctrl-C or SIGTERM; a job it was running when killed is taken again by
    a worker once its lease (MEDVISION_JOB_LEASE_S) has expired.
    """
    import asyncio
    import signal

    from control.db.migrate import upgrade
    from control.http.logging import configure_logging
    from control.inference.worker import run_worker

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_json)
    if settings.migrate_on_startup:  # off for a PostgreSQL runtime role that owns nothing
        upgrade(settings)
    typer.echo(f"MedVision worker: database {settings.backend} store, Triton {settings.triton_url}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
