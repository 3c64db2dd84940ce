"""``medvision serve``: the API and, unless disabled, the inference job worker."""

from __future__ import annotations

import typer

from control.cli.common import settings_or_exit


def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8080, help="port to bind"),
    worker: bool | None = typer.Option(
        None, "--worker/--no-worker", help="run the inference worker in-process (default: on)"
    ),
) -> None:
    """Run the control plane: REST API, web workstation at /, OpenAPI at /schema and (by
    default) the job worker."""
    import uvicorn

    from control.app import create_app

    settings = settings_or_exit()
    if worker is not None:
        settings = settings.model_copy(update={"worker_enabled": worker})
    typer.echo(
        f"MedVision listening on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)"
    )
    typer.echo(f"data directory: {settings.data_dir.resolve()}  database: {settings.backend} store")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        # No "server: uvicorn" header: the software and its version are nobody's business.
        server_header=False,
        # Forwarded headers are read by the app, only from MEDVISION_TRUSTED_PROXIES
        # (control.http.client_address); uvicorn's own handling would believe any peer's.
        proxy_headers=False,
    )
