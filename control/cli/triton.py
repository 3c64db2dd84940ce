"""``medvision triton``: run a local Triton Inference Server on the model repository."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from control.cli.common import fail
from control.errors import MedVisionError

app = typer.Typer(help="Run the Triton Inference Server locally.", no_args_is_help=True)


@app.callback()
def triton() -> None:
    """Run the Triton Inference Server locally."""


@app.command("serve")
def serve(
    repository: Path = typer.Option(Path("model_repository"), help="Triton model repository"),
    http_port: int = typer.Option(8000, help="HTTP port on 127.0.0.1"),
    grpc_port: int = typer.Option(8001, help="gRPC port on 127.0.0.1"),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port on 127.0.0.1"),
    log_verbose: int = typer.Option(0, help="Triton verbose log level (0 = off)"),
) -> None:
    """Serve the model repository on loopback until Ctrl-C or SIGTERM (then exit 0).

    The server's log is echoed to stdout; exits 1 if Triton cannot start or dies.
    """
    from control.triton.server import TritonServer

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    server = TritonServer(
        repository,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        log_verbose=log_verbose,
        forward_log=lambda line: typer.echo(line),
    )
    try:
        try:
            server.start()
        except MedVisionError as exc:
            raise fail(exc) from None
        typer.secho(
            f"Triton ready  gRPC {server.url_grpc}  HTTP {server.url_http}  "
            f"metrics {server.url_metrics}  (log: {server.log_path})",
            fg=typer.colors.GREEN,
        )
        while not stop.wait(0.5):
            status = server.poll()
            if status is not None:
                typer.secho(f"tritonserver exited with status {status}", fg=typer.colors.RED)
                raise typer.Exit(1)
        typer.echo("stopping Triton")
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    app()
