"""Helpers for tests that run real engines: SmolLM2 model folders, fake engines, polling."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from hearth.models.links import FileRoots
from support.smollm import FILENAME, smollm2_path

#: Small and quick on two CPU cores.
SMALL = {"ctx_len": 1024, "cpu_threads": 2}


def add_smol(
    home: Path,
    model_id: str,
    engine_parameters: dict[str, Any] | None = None,
    **fields: Any,
) -> Path:
    """models/<id>/ with SmolLM2 linked in (no 98 MB copy) and a model.json."""
    folder = home / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILENAME).symlink_to(smollm2_path())
    FileRoots(home).add([smollm2_path()])  # as `hearth models import --mode link` records it
    raw = {"engine_parameters": {**SMALL, **(engine_parameters or {})}, **fields}
    (folder / "model.json").write_text(json.dumps(raw), encoding="utf-8")
    return folder


def fake_engine(tmp: Path, name: str, body: str) -> str:
    """An executable 'llama-server' written in Python, for the engine's failure paths."""
    path = tmp / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return str(path)


#: Answers /health with 503 "Loading model" forever: a model that never finishes starting.
FOREVER_LOADING = """
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class Loading(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "Loading model"}}')
        def log_message(self, *args):
            pass
    port = int(sys.argv[sys.argv.index("--port") + 1])
    HTTPServer(("127.0.0.1", port), Loading).serve_forever()
"""


def until(condition: Callable[[], bool], limit: float = 60.0) -> bool:
    """Poll a condition (never a fixed sleep); the limit only bounds a failing test."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def gone(pid: int | None) -> bool:
    """True once pid no longer runs (a zombie nobody reaped yet counts as gone)."""
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def running(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """GET /v1/running as {id: object}."""
    return {m["id"]: m for m in http.get("/v1/running").json()["data"]}


def status(http: httpx.Client, model_id: str) -> str:
    return str(http.get(f"/v1/models/{model_id}").json()["status"])
