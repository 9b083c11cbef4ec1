"""`hearth models ...`: list, show, edit, remove, import (`hearth ls` is `models list`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from hearth.cli.common import (
    address_from,
    command,
    confirm,
    nest,
    parse_assignment,
    settings_from,
)

if TYPE_CHECKING:
    from hearth.cli.backend import Backend
    from hearth.cli.output import Table


def _connect(args: argparse.Namespace) -> Backend:
    from hearth.cli.backend import connect

    return connect(address_from(args), lambda: settings_from(args))


def models_table(models: list[dict[str, Any]]) -> Table:
    from hearth.cli.output import STATUS_STYLE, Table, human_size

    table = Table("ID", "NAME", "FORMAT", "SIZE", "STATUS", right=["SIZE"])
    for m in models:
        status = str(m.get("status", ""))
        table.add_row(
            m["id"],
            (m.get("name") or "")[:80],
            m.get("format") or "-",
            human_size(m.get("size")),
            status,
            styles=[None, None, None, None, STATUS_STYLE.get(status)],
        )
    return table


def list_models(args: argparse.Namespace) -> None:
    """List models: id, name, format, size, status."""
    from hearth.cli.backend import LocalBackend, server_for

    address = address_from(args)
    remote = server_for(address)
    if remote is not None:
        models = remote.list_models()
        if args.as_json:
            _print_json(models, remote if args.providers else None)
        else:
            print_listing(models, remote.import_errors())
            _jan_section(address.jan, remote)
        return
    from hearth.cli import listcache

    home = str(address.home)
    # a Jan folder's models (llamacpp/models/**) are outside what the cache fingerprints
    cache = listcache.enabled() and not address.jan
    cached = None if args.as_json or not cache else listcache.load(home)
    if cached is not None:  # nothing it depends on changed: no pydantic, no store
        print_listing(*cached)
        return
    local = LocalBackend(settings_from(args))
    started = time.time_ns()
    models = local.list_models()
    if args.as_json:
        _print_json(models, local if args.providers else None)
        return
    problems = local.import_errors()
    print_listing(models, problems)
    _jan_section(address.jan, local)
    if cache:
        listcache.save(home, started, models, problems, listcache.outside_paths(local.services))


def _print_json(models: list[dict[str, Any]], providers_from: Any) -> None:
    """`--json`: the API's model list as it always was; with `--providers`, an object holding
    it and Jan's providers (`{"models": [...], "jan_providers": {...}}`)."""
    from hearth.cli.output import echo

    if providers_from is None:
        echo(json.dumps(models, indent=2))
        return
    from hearth.cli.janproviders import providers_of

    echo(json.dumps({"models": models, "jan_providers": providers_of(providers_from)}, indent=2))


def _jan_section(jan: bool, backend: Any) -> None:
    """In a Jan data folder: Jan's remote providers after the table."""
    if jan:
        from hearth.cli.janproviders import print_providers, providers_of

        print_providers(providers_of(backend))


def print_listing(models: list[dict[str, Any]], problems: list[dict[str, Any]]) -> None:
    """The table, then why each invalid model is invalid and which files were not imported
    (from a server, the folder, or the list cache: the same rows print the same)."""
    from hearth.cli.output import clean, echo, paint

    if not models and not problems:
        echo("No models yet. Drop a .gguf into the models/ folder, or `hearth models import PATH`.")
        return
    models_table(models).print()
    for m in models:
        if m.get("error"):
            echo(f"{paint(clean(m['id']), 'red')}: {clean(m['error'], 4000)}")
    for problem in problems:
        label = paint("not imported", "yellow" if problem["state"] == "waiting" else "red")
        echo(f"{label} {clean(problem['path'])}: {clean(problem['error'], 4000)}")


def show(args: argparse.Namespace) -> None:
    """Show one model's full record (model.json with defaults, files, status)."""
    from hearth.cli.output import echo

    echo(json.dumps(_connect(args).get_model(args.model_id), indent=2))


def edit(args: argparse.Namespace) -> None:
    """Change model.json fields (values are JSON, else text). Other fields are kept.

    e.g. hearth models edit ID name='My model' engine_parameters.ctx_len=4096
    The value null removes a field.
    """
    patch: dict[str, Any] = {}
    for text in args.assignments:
        path, value = parse_assignment(text)
        nest(path, value, patch)
    from hearth.cli.output import clean, echo, paint

    updated = _connect(args).update_model(args.model_id, patch)
    echo(f"Updated {paint(clean(updated['id']), 'bold')}.")


def remove(args: argparse.Namespace) -> None:
    """Delete models (their folders). Linked original files are never deleted."""
    from hearth.cli.output import clean, echo, paint

    backend = _connect(args)
    for model_id in args.model_ids:
        model = backend.get_model(model_id)
        question = f"Delete {clean(model_id)} ({clean(model.get('name'))})?"
        if not args.yes and not confirm(question):
            continue
        backend.delete_model(model_id)
        echo(f"Deleted {paint(clean(model_id), 'bold')}.")


def import_model(args: argparse.Namespace) -> None:
    """Import a model file into the home folder, with model.json filled from its header.

    Runs on this machine directly (the path is yours to give), whether or not a server runs.
    """
    from pathlib import Path

    from hearth.cli.render import console, human_size, transfer_progress
    from hearth.services import Services

    path, mode = Path(args.path), args.mode
    services = Services.create(settings_from(args))
    with transfer_progress(transient=True) as bar:
        task = bar.add_task(f"{mode} {path.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        model = services.import_model(path, model_id=args.id, mode=mode, progress=progress)
    meta = model.get("metadata") or {}
    console.print(
        f"Imported [bold]{model['id']}[/bold] ({mode}): {meta.get('architecture', '?')}, "
        f"{meta.get('quantization', '?')}, context {meta.get('context_length', '?')}, "
        f"{human_size(model.get('size'))}."
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="print the API's JSON, not a table"
    )


def _list_flags(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    parser.add_argument(
        "--providers",
        action="store_true",
        help='with --json: print {"models": [...], "jan_providers": {...}} (Jan\'s remote '
        "providers, in a Jan data folder) instead of the bare model list",
    )


def _removing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_ids", nargs="+", metavar="ID")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`hearth ls` (alias `list`), `hearth rm` and the `hearth models` group."""
    _list_flags(command(sub, "ls", list_models, parents=[common], aliases=["list"]))
    _removing(command(sub, "rm", remove, parents=[common]))
    group: argparse.ArgumentParser = sub.add_parser(
        "models",
        help="Manage the models in your home folder",
        description="Manage the models in your home folder (`hearth ls` is `hearth models list`).",
        parents=[common],
    )
    group.set_defaults(help_of=group)
    verbs = group.add_subparsers(title="commands", metavar="COMMAND")
    _list_flags(command(verbs, "list", list_models, parents=[common]))
    command(verbs, "show", show, parents=[common]).add_argument("model_id", metavar="ID")
    editing = command(verbs, "edit", edit, parents=[common])
    editing.add_argument("model_id", metavar="ID")
    editing.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    _removing(command(verbs, "rm", remove, parents=[common]))
    importing = command(verbs, "import", import_model, parents=[common])
    importing.add_argument("path", help="a .gguf file (any part of a split model)")
    importing.add_argument("--id", help="model id (default: from the file name)")
    importing.add_argument(
        "--mode",
        choices=["copy", "move", "link"],
        default="copy",
        help="copy (a hard link when on the same disk; the default), move (rename), "
        "or link (use the file in place)",
    )
