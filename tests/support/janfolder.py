"""Jan data folders for the tests, built from ../shared/spec/jan-data-folder.md (Jan 0.6-0.8).

Only what Jan itself writes: `llamacpp/models/<id>/model.yml` (ids may nest), Jan's llama.cpp
settings (an array of setting objects), its flat `settings.json` of strings, `extensions/`,
`mcp_config.json`, `threads/` and `assistants/`. Tests add what they exercise on top.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def make_jan_folder(root: Path, *, providers: list[dict[str, Any]] | None = None) -> Path:
    """An empty Jan data folder as Jan 0.8 leaves it after its first start."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("llamacpp/models", "extensions", "threads", "assistants", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "logs" / "app.log").write_text("jan's own log\n")
    (root / "mcp_config.json").write_text(
        json.dumps({"mcpServers": {}, "mcpSettings": {"toolCallTimeoutSeconds": 30}}, indent=2)
    )
    state = {"state": {"providers": providers or [], "selectedProvider": "llamacpp"}, "version": 5}
    settings = {
        "model-provider": json.dumps(state),
        "cortex_models_migrated": "true",
        "__settings_migrated_to_backend__": "true",
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    return root


def write_llamacpp_settings(root: Path, values: dict[str, Any]) -> None:
    """Jan's `llamacpp/settings.json`: an array of setting components."""
    items = [
        {
            "key": key,
            "title": key.replace("_", " ").title(),
            "description": "",
            "controllerType": "input",
            "controllerProps": {"value": value},
            "extensionName": "@janhq/llamacpp-extension",
        }
        for key, value in values.items()
    ]
    (root / "llamacpp" / "settings.json").write_text(json.dumps(items, indent=2))


def add_downloaded_model(
    root: Path, model_id: str, gguf: Path, *, mmproj: Path | None = None, **extra: Any
) -> Path:
    """A model as Jan's hub download leaves it: the weights copied in beside model.yml, paths
    relative to the data folder."""
    folder = root / "llamacpp" / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gguf, folder / "model.gguf")
    size = gguf.stat().st_size
    data: dict[str, Any] = {
        "model_path": f"llamacpp/models/{model_id}/model.gguf",
        "name": model_id.rsplit("/", 1)[-1],
        "size_bytes": size,
        "model_size_bytes": size,
        "embedding": False,
        "embedding_check_v": 3,
    }
    if mmproj is not None:
        shutil.copyfile(mmproj, folder / "mmproj.gguf")
        data["mmproj_path"] = f"llamacpp/models/{model_id}/mmproj.gguf"
        data["size_bytes"] = size + mmproj.stat().st_size
    data.update(extra)
    write_model_yml(folder, data)
    return folder


def add_imported_model(root: Path, model_id: str, gguf: Path, **extra: Any) -> Path:
    """A model as Jan's local import leaves it: model.yml pointing at the user's own file."""
    folder = root / "llamacpp" / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "model_path": str(gguf.resolve()),
        "name": gguf.stem,
        "size_bytes": gguf.stat().st_size,
        "embedding": False,
        "embedding_check_v": 3,
    }
    data.update(extra)
    write_model_yml(folder, data)
    return folder


def write_model_yml(folder: Path, data: dict[str, Any]) -> None:
    """As Jan writes it (serde_yaml from JSON: keys in order, no flow style)."""
    (folder / "model.yml").write_text(yaml.safe_dump(data, sort_keys=False))


def read_model_yml(folder: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((folder / "model.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@contextlib.contextmanager
def fifo_feeding(path: Path, text: str) -> Iterator[None]:
    """A FIFO at `path` whose writer hands `text` to whoever opens it for reading.

    A reader that (wrongly) opens it with a plain `open()` gets valid content instead of hanging
    the test, so a test can tell "read through the FIFO" from "refused it". On exit the FIFO is
    opened for reading here, which releases a writer nobody met."""
    os.mkfifo(path)

    def feed() -> None:
        # open blocks until a reader opens it; a reader that opened it and left: BrokenPipe
        with contextlib.suppress(BrokenPipeError), open(path, "w", encoding="utf-8") as writer:
            writer.write(text)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if thread.is_alive():
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            thread.join()
            os.close(fd)
