"""`hearth models ...`: list, show, edit, remove (and import, see importer)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hearth.cli.common import friendly_errors, nest, parse_assignment, settings_from

app = typer.Typer(
    help="Manage the models in your home folder.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("list")
@friendly_errors
def list_models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON instead of a table."),
) -> None:
    """List models: id, name, format, size, status."""
    from hearth.cli.backend import connect
    from hearth.cli.render import console, models_table, shown

    backend = connect(settings_from(ctx))
    models = backend.list_models()
    if as_json:
        console.print_json(json.dumps(models))
        return
    if not models and not backend.import_errors():
        console.print(
            "No models yet. Drop a .gguf into the models/ folder, or `hearth models import PATH`."
        )
        return
    console.print(models_table(models))
    for m in models:
        if m.get("error"):
            console.print(
                f"[red]{shown(m['id'])}[/red]: {shown(m['error'], 4000)}",
                highlight=False,
                soft_wrap=True,
            )
    for problem in backend.import_errors():
        colour = "yellow" if problem["state"] == "waiting" else "red"
        console.print(
            f"[{colour}]not imported[/{colour}] {problem['path']}: {problem['error']}",
            highlight=False,
        )


@app.command("show")
@friendly_errors
def show(ctx: typer.Context, model_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Show one model's full record (model.json with defaults, files, status)."""
    from hearth.cli.backend import connect
    from hearth.cli.render import console

    backend = connect(settings_from(ctx))
    console.print_json(json.dumps(backend.get_model(model_id)))


@app.command("edit")
@friendly_errors
def edit(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., metavar="ID"),
    assignments: list[str] = typer.Argument(
        ...,
        metavar="KEY=VALUE...",
        help="e.g. name='My model' engine_parameters.ctx_len=4096; value null removes",
    ),
) -> None:
    """Change model.json fields (values are JSON, else text). Other fields are kept."""
    patch: dict = {}
    for text in assignments:
        path, value = parse_assignment(text)
        nest(path, value, patch)
    from hearth.cli.backend import connect
    from hearth.cli.render import console

    backend = connect(settings_from(ctx))
    updated = backend.update_model(model_id, patch)
    console.print(f"Updated [bold]{updated['id']}[/bold].")


@app.command("rm")
@friendly_errors
def remove(
    ctx: typer.Context,
    model_ids: list[str] = typer.Argument(..., metavar="ID..."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete models (their folders). Linked original files are never deleted."""
    from hearth.cli.backend import connect
    from hearth.cli.render import console

    backend = connect(settings_from(ctx))
    for model_id in model_ids:
        model = backend.get_model(model_id)
        if not yes and not typer.confirm(f"Delete {model_id} ({model.get('name')})?"):
            continue
        backend.delete_model(model_id)
        console.print(f"Deleted [bold]{model_id}[/bold].")


@app.command("import")
@friendly_errors
def import_model(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A .gguf file (any part of a split model)."),
    model_id: str | None = typer.Option(
        None, "--id", help="Model id (default: from the file name)."
    ),
    mode: str = typer.Option(
        "copy",
        "--mode",
        help="copy (a hard link when on the same disk), move (rename), or link (use it in place).",
    ),
) -> None:
    """Import a model file into the home folder, with model.json filled from its header.

    Runs on this machine directly (the path is yours to give), whether or not a server runs.
    """
    from hearth.cli.render import console, human_size, transfer_progress
    from hearth.services import Services

    services = Services.create(settings_from(ctx))
    with transfer_progress(transient=True) as bar:
        task = bar.add_task(f"{mode} {path.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        model = services.import_model(path, model_id=model_id, mode=mode, progress=progress)
    meta = model.get("metadata") or {}
    console.print(
        f"Imported [bold]{model['id']}[/bold] ({mode}): {meta.get('architecture', '?')}, "
        f"{meta.get('quantization', '?')}, context {meta.get('context_length', '?')}, "
        f"{human_size(model.get('size'))}."
    )
