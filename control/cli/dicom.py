"""``medvision dicom``: the DICOM network node (C-ECHO and C-STORE SCP)."""

from __future__ import annotations

import typer

from control.cli.common import settings_or_exit
from control.config import Settings

app = typer.Typer(help="DICOM network services (docs/pacs-listener.md).", no_args_is_help=True)


@app.command("listen")
def listen(
    host: str | None = typer.Option(None, help="address to listen on [MEDVISION_DICOM_HOST]"),
    port: int | None = typer.Option(None, help="TCP port [MEDVISION_DICOM_PORT]", min=0),
    ae_title: str | None = typer.Option(
        None, "--ae-title", help="called AE title [MEDVISION_DICOM_AE_TITLE]"
    ),
) -> None:
    """Receive studies over DICOM (C-STORE) from the calling AE titles allowed in
    MEDVISION_DICOM_ALLOWED_AES, through the same ingest as an upload.

    Prints its AE title and port once it accepts associations; stops cleanly on Ctrl-C or
    SIGTERM, storing what open associations had spooled.
    """
    import asyncio
    import signal

    from control.dicom.listener import DicomListener, accepted_transfer_syntaxes, serve
    from control.http.logging import configure_logging

    settings = settings_or_exit()
    if ae_title is not None:
        try:
            ae_title = Settings._dicom_ae_title_checked(ae_title)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--ae-title") from None
    configure_logging(settings.log_level, settings.log_json)
    if not settings.dicom_allowed_aes:
        typer.secho(
            "warning: MEDVISION_DICOM_ALLOWED_AES is empty: every association will be rejected",
            fg=typer.colors.YELLOW,
            err=True,
        )

    def started(listener: DicomListener) -> None:
        syntaxes = ", ".join(syntax.name for syntax in accepted_transfer_syntaxes())
        typer.echo(
            f"MedVision DICOM listener: AE title {listener.ae_title} on "
            f"{listener.host}:{listener.port} (transfer syntaxes: {syntaxes})"
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, host=host, port=port, ae_title=ae_title, started=started, stop=stop)

    asyncio.run(main())
