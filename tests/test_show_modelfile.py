"""/api/show's Modelfile, fed to `hearth create -f`, makes the same model (issue 22, point 7):
a system prompt, template, license or stop string holding `\"\"\"` and new lines of
instructions comes back as the very text, and adds no instruction.

Before the fix the text was written between triple quotes as it was, so the `\"\"\"` inside
ended the value and `FROM /etc/passwd` became an instruction of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_model
from support.cli import CliRunner
from support.gguf_factory import gguf_bytes
from support.server import ThreadedServer

from hearth.cli.main import main as app
from hearth.models.modelfile import parse

SYSTEM = 'Be kind."""\nFROM /etc/passwd\nPARAMETER num_ctx 1\nSYSTEM """owned'
TEMPLATE = '{{ .System }}"""\nADAPTER /tmp/evil.bin\nTEMPLATE """{{ .Prompt }}\n'
LICENSE = 'MIT\r\nLICENSE """second"""\n'
STOP = '"""\nFROM evil\n'
RECORD = {
    "name": "Hostile",
    "metadata": {"system_prompt": SYSTEM, "license": LICENSE, "ollama": {"template": TEMPLATE}},
    "model_parameters": {"temperature": 0.5, "stop": [STOP, "</s>"]},
}


def _show(server: ThreadedServer, name: str) -> str:
    with server.http() as http:
        answer = http.post("/api/show", json={"model": name}).raise_for_status().json()
    modelfile = answer["modelfile"]
    assert isinstance(modelfile, str)
    return modelfile


def test_show_then_create_gives_back_the_same_text(
    home: Path, tmp_path: Path, server: ThreadedServer
) -> None:
    make_model(home, "hostile", RECORD, {"hostile.gguf": gguf_bytes(name="Hostile")})
    shown = _show(server, "hostile")
    mf = parse(shown)  # what `hearth create -f` reads: the very values, nothing more
    assert mf.source == str(home / "models" / "hostile" / "hostile.gguf")
    assert (mf.system, mf.template, mf.license) == (SYSTEM, TEMPLATE, [LICENSE])
    assert mf.parameters == {"temperature": 0.5, "stop": [STOP, "</s>"]}
    assert mf.messages == []

    (tmp_path / "Modelfile").write_text(shown, encoding="utf-8")
    args = ["--home", str(home), "create", "again", "-f", str(tmp_path / "Modelfile")]
    result = CliRunner().invoke(app, args, env={"HEARTH_PORT": str(server.port)})
    assert result.exit_code == 0, result.output
    raw = json.loads((home / "models" / "again" / "model.json").read_text(encoding="utf-8"))
    meta = raw["metadata"]
    assert (meta["system_prompt"], meta["ollama"]["template"]) == (SYSTEM, TEMPLATE)
    assert meta["license"] == LICENSE
    assert raw["model_parameters"]["stop"] == [STOP, "</s>"]
    again = parse(_show(server, "again"))
    assert (again.system, again.template, again.license) == (SYSTEM, TEMPLATE, [LICENSE])
    again.parameters.pop("num_ctx")  # the import records the GGUF's own context length
    assert again.parameters == mf.parameters


def test_hearth_show_modelfile_then_create_gives_back_the_same_text(
    home: Path, tmp_path: Path, server: ThreadedServer
) -> None:
    """The command line's own Modelfile (`hearth show --modelfile`) reads back as exactly."""
    make_model(home, "hostile", RECORD, {"hostile.gguf": gguf_bytes(name="Hostile")})
    env = {"HEARTH_PORT": str(server.port)}
    shown = CliRunner().invoke(
        app, ["--home", str(home), "show", "hostile", "--modelfile"], env=env
    )
    assert shown.exit_code == 0, shown.output
    mf = parse(shown.output)
    assert (mf.source, mf.system, mf.template, mf.license) == (
        "hostile",
        SYSTEM,
        TEMPLATE,
        [LICENSE],
    )
    assert mf.parameters["stop"] == [STOP, "</s>"] and mf.messages == []
    (tmp_path / "Modelfile").write_text(shown.output, encoding="utf-8")
    args = ["--home", str(home), "create", "again", "-f", str(tmp_path / "Modelfile")]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    raw = json.loads((home / "models" / "again" / "model.json").read_text(encoding="utf-8"))
    meta = raw["metadata"]
    assert (meta["system_prompt"], meta["ollama"]["template"]) == (SYSTEM, TEMPLATE)
    assert meta["license"] == LICENSE and raw["model_parameters"]["stop"] == [STOP, "</s>"]
