"""``medvision serve``: the API (and, from issue 5 on, the job worker)."""

from __future__ import annotations

import typer

from control.cli.common import settings_or_exit


def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8080, help="port to bind"),
) -> None:
    """Run the control plane: REST API and OpenAPI at /schema."""
    import uvicorn

    from control.app import create_app

    settings = settings_or_exit()
    typer.echo(
        f"MedVision listening on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)"
    )
    typer.echo(f"data directory: {settings.data_dir.resolve()}  database: {settings.backend} store")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
