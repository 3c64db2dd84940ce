"""``medvision openapi``: the OpenAPI document, for the workstation's generated API types."""

from __future__ import annotations

from pathlib import Path

import typer

from control.cli.common import settings_or_exit


def openapi(
    out: Path | None = typer.Option(None, "--out", help="write to this file instead of stdout"),
) -> None:
    """Print the OpenAPI document as JSON (sorted keys, indent 2: stable between runs).

    Needs no server and no database: the app is built against a throw-away directory and
    never started, so nothing is migrated, connected or written outside it.
    """
    import json
    import tempfile

    from control.app import create_app

    settings = settings_or_exit()
    with tempfile.TemporaryDirectory(prefix="medvision-openapi-") as scratch:
        offline = settings.model_copy(
            update={
                "data_dir": Path(scratch),
                "database_url": None,
                "storage_backend": "filesystem",
                "redis_url": None,
                "migrate_on_startup": False,
                "worker_enabled": False,
            }
        )
        document = create_app(offline).openapi_schema.to_schema()
    text = json.dumps(document, sort_keys=True, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
