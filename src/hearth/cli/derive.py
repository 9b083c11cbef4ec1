"""`hearth cp SRC DST` and `hearth create NAME -f Modelfile`: new models made from others.

Both speak Ollama's own API to the running server (`POST /api/copy`, `POST /api/create`; a GGUF
named by `FROM ./file.gguf` is sent as its absolute path, which a server on this machine reads
if it lies in the home or an `import_dirs` folder: Hearth has no `/api/blobs` upload), so the
CLI and every Ollama client go through one code path. With no server running they call the
same `Services` methods those routes call, in this process.

The Modelfile is read and checked here first (`hearth.models.modelfile`, pure): a mistake is
reported with its line number before anything is sent or written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.cli.common import address_from, command, fail, settings_from
from hearth.core.errors import HearthError

if TYPE_CHECKING:
    from hearth.cli.client import HearthClient
    from hearth.models.modelfile import Modelfile
    from hearth.services.derive import ModelChanges

FILE_ELSEWHERE = (
    "(A running server reads model files only from the home and import_dirs; without a "
    "server, `hearth create` reads them from anywhere.)"
)


def ollama_call(client: HearthClient, method: str, path: str, body: Any = None) -> Any:
    """One call to an Ollama route; its `{"error": "..."}` answer becomes that message. A
    success may have no body at all (Ollama's copy answers a bare 200): that is None."""
    try:
        return client.request(method, path, json=body, timeout=None)
    except ValueError:  # a 2xx whose body is not JSON (empty): done
        return None
    except HearthError as exc:
        raise type(exc).from_wire(
            _ollama_message(exc.message), param=exc.param, code=exc.code
        ) from None


def _ollama_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else text


def _changes(modelfile: Modelfile, name: str) -> ModelChanges:
    """The Modelfile's settings as the service's `ModelChanges` (Ollama's option names mapped
    to Hearth's by the same function an Ollama pull uses)."""
    from hearth.downloads.ollama import map_params
    from hearth.services.derive import ModelChanges

    model_params, engine_params, ignored = map_params([json.dumps(modelfile.parameters)])
    return ModelChanges(
        system=modelfile.system,
        template=modelfile.template,
        license="\n\n".join(modelfile.license) or None,
        name=name,
        model_parameters=model_params,
        engine_parameters=engine_params,
        ignored=ignored,
    )


def _create_here(args: argparse.Namespace, modelfile: Modelfile) -> None:
    """`hearth create` with no server: FROM a model copies it; FROM a file imports it (this
    machine's files are the user's own: no `import_dirs` check, as `hearth models import`)."""
    import asyncio

    from hearth.services import Services
    from hearth.services.derive import changes_patch

    services = Services.create(settings_from(args))
    changes = _changes(modelfile, args.name)
    if modelfile.path is None:
        asyncio.run(services.copy_model(modelfile.source, args.name, changes))
        return
    services.import_model(modelfile.path, model_id=args.name, mode="copy")
    patch = changes_patch(changes)
    if patch:
        services.update_model(args.name, patch)


def copy(args: argparse.Namespace) -> None:
    """Copy model SRC to a new model DST (its own folder; the weights are hard links when the
    disk allows, so a copy costs no space)."""
    from hearth.cli.backend import server_for
    from hearth.cli.output import clean, echo, paint

    client = server_for(address_from(args))
    body = {"source": args.source, "destination": args.destination}
    if client is not None:
        with client:
            ollama_call(client, "POST", "/api/copy", body)
    else:
        import asyncio

        from hearth.services import Services

        services = Services.create(settings_from(args))
        asyncio.run(services.copy_model(args.source, args.destination))
    echo(f"Copied {clean(args.source)} to {paint(clean(args.destination), 'bold')}.")


def read_modelfile(path: Path) -> Modelfile:
    """The Modelfile at `path`, parsed and checked (a FROM file must exist)."""
    from hearth.core.errors import ModelfileError
    from hearth.models.modelfile import parse

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"Could not read the Modelfile {path}: {exc.strerror or exc}.") from None
    modelfile = parse(text, path.resolve().parent)
    if modelfile.path is not None and not modelfile.path.is_file():
        raise ModelfileError(
            f"FROM {modelfile.source}: {modelfile.path} is not a file. Give a .gguf file "
            "(relative paths start at the Modelfile's folder) or a model name."
        )
    return modelfile


def create(args: argparse.Namespace) -> None:
    """Create model NAME from a Modelfile (FROM a model or a .gguf; PARAMETER, SYSTEM,
    TEMPLATE, LICENSE, MESSAGE). ADAPTER is not supported."""
    from hearth.cli.backend import server_for
    from hearth.cli.output import clean, echo, paint, warn
    from hearth.core.errors import Forbidden

    modelfile = read_modelfile(Path(args.file))
    if modelfile.messages:
        warn("Note: MESSAGE lines are not kept (Hearth has no preset messages yet).")
    client = server_for(address_from(args))
    if client is not None:
        with client:
            try:
                ollama_call(client, "POST", "/api/create", modelfile.create_body(args.name))
            except Forbidden as exc:
                raise fail(f"{exc.message} {FILE_ELSEWHERE}") from None
    else:
        _create_here(args, modelfile)
    echo(
        f"Created {paint(clean(args.name), 'bold')}. Chat with it: `hearth run {clean(args.name)}`."
    )


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`hearth cp` and `hearth create`."""
    copying = command(sub, "cp", copy, parents=[common])
    copying.add_argument("source", metavar="SRC", help="the model to copy")
    copying.add_argument("destination", metavar="DST", help="the new model's id")
    creating = command(sub, "create", create, parents=[common])
    creating.add_argument("name", metavar="NAME", help="the new model's id")
    creating.add_argument(
        "-f", "--file", default="Modelfile", help="the Modelfile (default: ./Modelfile)"
    )
