"""`hearth pull`: download a model (by id, URL or Hugging Face reference) with progress bars.

Through the running server when there is one (so `hearth serve` lists it as downloading), else
in this process. Ctrl-C cancels and keeps the `.part` files: run the same command to resume.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hearth.cli.common import Exit, address_from, command, fail, settings_from
from hearth.core.errors import HearthError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from hearth.cli.client import HearthClient
    from hearth.core.config import Settings
    from hearth.services import Services


class _Bars:
    """One Rich bar per file, fed job snapshots (dicts, as the API sends them)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def update(self, snap: dict[str, Any]) -> None:
        from hearth.cli.render import shown

        for f in snap.get("files", []):
            task = self.tasks.get(f["filename"])
            if task is None:
                task = self.progress.add_task(shown(f["filename"], 80), total=f["total"])
                self.tasks[f["filename"]] = task
            self.progress.update(task, completed=f["done"], total=f["total"])


def _finish(snap: dict[str, Any], model_id: str) -> None:
    from hearth.cli.render import console, err_console, shown

    state = snap.get("state")
    if state == "completed":
        notes = [f["note"] for f in snap.get("files", []) if f.get("note")]
        for note in notes:
            console.print(f"[yellow]note:[/yellow] {shown(note)}", highlight=False)
        name = shown(model_id)
        console.print(f"Pulled [bold]{name}[/bold]. Chat with it: `hearth run {name}`.")
        return
    if state == "cancelled":
        err_console.print("Cancelled. The partial files are kept: run the same command to resume.")
        raise Exit(130)
    error = snap.get("error") or "the download failed"
    raise fail(error)


def _via_server(client: HearthClient, source: str, model_id: str | None) -> None:
    from hearth.cli.render import console, shown, transfer_progress

    body = client.request("POST", "/v1/models/pull", json={"source": source, "id": model_id})
    if body.get("id") is None:
        console.print(f"[bold]{shown(body['model_id'])}[/bold] is already complete.")
        return
    job_id, snap = body["id"], body
    with transfer_progress() as progress:
        bars = _Bars(progress)
        try:
            with client.stream(
                "GET", f"/v1/downloads/{job_id}", headers={"Accept": "text/event-stream"}
            ) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: {"):
                        snap = json.loads(line[6:])
                        bars.update(snap)
        except KeyboardInterrupt:
            snap = client.request("DELETE", f"/v1/downloads/{job_id}")
    _finish(snap, body["model_id"])


async def _locally(settings: Settings, source: str, model_id: str | None) -> None:
    """No server: this process does what `hearth serve` would, through the same `Services`
    (its start-up work included: home layout, interrupted deletes and imports finished)."""
    from hearth.services import Services

    services = Services.create(settings)
    try:
        await _follow(services, source, model_id)
    finally:
        await services.stop()


async def _follow(services: Services, source: str, model_id: str | None) -> None:
    import asyncio

    from hearth.cli.render import console, shown, transfer_progress

    pulled, job = await services.pull(source, model_id)
    if job is None:
        console.print(f"[bold]{shown(pulled)}[/bold] is already complete.")
        return
    snap: dict[str, Any] = job.to_dict()
    with transfer_progress() as progress:
        bars = _Bars(progress)
        try:
            async for s in services.download_progress(job.id):
                snap = s
                bars.update(snap)
        except asyncio.CancelledError:
            snap = await services.cancel_download(job.id)
    _finish(snap, job.model_id)


def pull(args: argparse.Namespace) -> None:
    """Download a model, resumably and verified, with a progress bar per file."""
    import asyncio

    from hearth.cli.backend import server_for

    source, model_id = args.source, args.id
    client = server_for(address_from(args))
    try:
        if client is not None:
            with client:
                _via_server(client, source, model_id)
            return
        asyncio.run(_locally(settings_from(args), source, model_id))
    except HearthError as exc:
        raise fail(exc.message) from None
    except KeyboardInterrupt:
        from hearth.cli.render import err_console

        err_console.print("Cancelled. The partial files are kept: run the same command to resume.")
        raise Exit(130) from None


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = command(sub, "pull", pull, parents=[common])
    parser.add_argument(
        "source",
        help="a model id (fetch its sources), an https URL of a .gguf, or OWNER/REPO[:QUANT] "
        "on Hugging Face",
    )
    parser.add_argument("--id", help="model id for a new model")
