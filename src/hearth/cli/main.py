"""The `hearth` command."""

from __future__ import annotations

from pathlib import Path

import typer

from hearth import __version__
from hearth.cli import models, pull, run
from hearth.cli.common import friendly_errors, settings_from, setup_logging

app = typer.Typer(
    help="Hearth: run language models on your own computer behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's plain help: Typer's Rich help imports rich.markdown, markdown-it and pygments,
    # which would double the time `hearth --help` (or any usage error) takes.
    rich_markup_mode=None,
)
app.add_typer(models.app, name="models")
app.command("pull")(pull.pull)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hearth {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", envvar="HEARTH_HOME", help="Home folder (default ~/hearth)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    ctx.obj = {"home": home}


@app.command()
@friendly_errors
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 1337)."),
    api_key: str | None = typer.Option(None, "--api-key", help="Require this bearer key on /v1."),
    cors_origin: list[str] | None = typer.Option(
        None, "--cors-origin", help="Allowed browser origin (repeatable)."
    ),
    insecure: bool | None = typer.Option(
        None, "--insecure", help="Allow a non-loopback bind without a key."
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning, error."),
    starter: bool | None = typer.Option(
        None,
        "--starter/--no-starter",
        help="With no models yet, install SmolLM2-135M-Instruct (98 MB) first (default: on).",
    ),
) -> None:
    """Serve the API on 127.0.0.1:1337."""
    from hearth.runtime import run_server

    settings = settings_from(
        ctx,
        host=host,
        port=port,
        api_key=api_key,
        cors_origins=cors_origin or None,
        insecure=insecure,
        log_level=log_level,
        starter=starter,
    )
    setup_logging(settings.log_level)
    run_server(settings)


run.register(app)  # hearth run / ps / stop
