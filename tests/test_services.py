"""The one service layer: the HTTP routes and the CLI reach the same `Services` methods.

End to end: a real server on a free port with a real engine (SmolLM2), the real `hearth` CLI
(Typer's runner, in this process), and a real file server for pulls. Calls to the service
methods are recorded by wrapping them (they still run): which face called is the point.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import CliRunner
from support.engines import add_smol, gone
from support.fault_server import FaultServer
from support.gguf_factory import gguf_bytes
from support.server import ThreadedServer

from hearth.cli.main import main as cli_app
from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

SRC = Path(__file__).resolve().parents[1] / "src" / "hearth"
MODEL = gguf_bytes(name="Pulled Model", context_length=4096, n_tensors=2, tensor_shape=(64, 64))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(method, first argument) of every call to the recorded Services methods, any instance."""
    seen: list[tuple[str, str]] = []
    for name in ("delete_model", "pull", "start_model", "stop_model"):
        original = getattr(Services, name)

        async def recorded(self: Services, arg: str, *a: Any, _o: Any = original, _n: str = name,
                           **kw: Any) -> Any:  # fmt: skip
            seen.append((_n, arg))
            return await _o(self, arg, *a, **kw)

        monkeypatch.setattr(Services, name, recorded)
    return seen


def cli(home: Path, *args: str, port: int | None = None) -> tuple[int, str]:
    env = {"HEARTH_PORT": str(port)} if port is not None else None
    result = CliRunner().invoke(cli_app, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


@pytest.fixture
def smol_home(home: Path) -> Path:
    add_smol(home, "smol-api")
    add_smol(home, "smol-cli")
    return home


@pytest.fixture
def live(smol_home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=smol_home, env={}))) as srv:
        yield srv


def test_deleting_a_running_model_stops_its_engine_from_the_api_and_the_cli(
    live: ThreadedServer, smol_home: Path, calls: list[tuple[str, str]]
) -> None:
    with live.http() as http:
        api = http.post("/v1/models/smol-api/start").json()
        assert not gone(api["pid"])
        deleted = http.delete("/v1/models/smol-api")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert gone(api["pid"]) and not (smol_home / "models" / "smol-api").exists()

        by_cli = http.post("/v1/models/smol-cli/start").json()
        assert not gone(by_cli["pid"])
        code, out = cli(smol_home, "models", "rm", "-y", "smol-cli", port=live.port)
        assert code == 0 and "Deleted" in out, out
        assert gone(by_cli["pid"]) and not (smol_home / "models" / "smol-cli").exists()
        assert http.get("/v1/running").json()["data"] == []
    deletes = [c for c in calls if c[0] == "delete_model"]
    assert deletes == [("delete_model", "smol-api"), ("delete_model", "smol-cli")]


def test_start_and_stop_from_the_cli_and_the_api_share_the_service(
    live: ThreadedServer, smol_home: Path, calls: list[tuple[str, str]]
) -> None:
    with live.http() as http:
        started = http.post("/v1/models/smol-api/start", json={"keep_alive": "1h"}).json()
        assert started["keep_alive"] == 3600
        code, out = cli(smol_home, "stop", "smol-api", port=live.port)
        assert code == 0 and "Stopped" in out, out
        assert gone(started["pid"])
        again = http.post("/v1/models/smol-api/stop").json()
        assert again == {"id": "smol-api", "object": "model", "stopped": False, "status": "ready"}
    assert calls == [
        ("start_model", "smol-api"),
        ("stop_model", "smol-api"),
        ("stop_model", "smol-api"),
    ]


def test_offline_rm_goes_through_the_same_service_method(
    home: Path, calls: list[tuple[str, str]]
) -> None:
    add_smol(home, "gone-soon")
    code, out = cli(home, "models", "rm", "-y", "gone-soon")
    assert code == 0, out
    assert calls == [("delete_model", "gone-soon")]
    assert not (home / "models" / "gone-soon").exists()


def test_cli_pull_without_a_server_does_the_start_up_work(
    home: Path, calls: list[tuple[str, str]]
) -> None:
    """Like `hearth serve`, a pull in the CLI's own process first finishes what a crash left:
    a half-deleted folder is removed, a half-imported file goes back into models/."""
    models = home / "models"
    (models / ".deleting-old").mkdir()
    (models / ".deleting-old" / "junk.gguf").write_bytes(b"x" * 10)
    staging = models / ".importing-abc"
    staging.mkdir()
    (staging / "mine.bin").write_bytes(b"the user's file")
    with FaultServer() as files:
        files.add("/m/model-Q4_K_M.gguf", MODEL)
        code, out = cli(home, "pull", files.url("/m/model-Q4_K_M.gguf"), "--id", "pulled")
    assert code == 0 and "Pulled pulled" in out, out
    assert (models / "pulled" / "model-Q4_K_M.gguf").read_bytes() == MODEL
    assert not (models / ".deleting-old").exists() and not staging.exists()
    assert (models / "mine.bin").read_bytes() == b"the user's file"
    assert (home / "logs").is_dir() and (home / "engines").is_dir()
    assert calls == [("pull", files.url("/m/model-Q4_K_M.gguf"))]
    model = json.loads((models / "pulled" / "model.json").read_text())
    assert model["sources"][0]["filename"] == "model-Q4_K_M.gguf"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_cli_never_imports_the_server() -> None:
    """The CLI starts servers only through `hearth.runtime` (the assembly), never `server/`."""
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.startswith("hearth.server"))
        for path in (SRC / "cli").glob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_routes_hold_no_store_or_engine_logic() -> None:
    """Routes call `Services` methods; they never reach its parts (store, engines, pulls)."""
    reach = (".store.", ".engines.", ".pulls.", ".importer.")
    for path in (SRC / "server").glob("*.py"):
        if path.name in ("app.py", "serve.py", "background.py", "health.py"):
            continue
        text = path.read_text(encoding="utf-8")
        assert not [r for r in reach if f"services{r}" in text or f"){r}" in text], path.name
