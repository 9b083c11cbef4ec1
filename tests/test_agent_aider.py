"""aider (PyPI `aider-chat`, pinned in tests/support/aider.py) against a real `hearth serve`
with SmolLM2, in both of the ways its documentation connects to a local server:

- OpenAI mode: `--model openai/<id> --openai-api-base <hearth>/v1` with any OPENAI_API_KEY;
  litellm streams `POST /v1/chat/completions`.
- Ollama mode: `--model ollama_chat/<id>` with OLLAMA_API_BASE=<hearth>; litellm asks
  `POST /api/show` about the model and streams `POST /api/chat`, with `options.num_ctx` of
  aider's choosing (its prompt's size x 1.25 + 8192: Hearth reloads the model with that
  context, capped at the model's trained 8192).
- aider's older Ollama prefix, `--model ollama/<id>`: litellm writes the prompt itself and
  sends `POST /api/generate`.

Each run answers one message, non-interactively, and must exit 0 with the model's answer in
its transcript, having reached the model only through Hearth (Hearth's access log shows the
request; aider is given no other model server and is kept from every website, see
support/aider.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support.aider import AiderRun, run_aider
from support.engines import add_smol
from support.server import HearthProcess

pytestmark = pytest.mark.slow  # installs aider once (~1 min), runs `hearth serve` and SmolLM2

MESSAGE = "Say hello."


def _answer(run: AiderRun) -> str:
    """The assistant's text after the user's message in aider's transcript (its own notes
    are the `>` lines)."""
    _, _, after = run.history.partition(f"#### {MESSAGE}")
    lines = [line for line in after.splitlines() if line.strip() and not line.startswith(">")]
    return "\n".join(lines).strip()


def _run(tmp_path: Path, home: Path, model: str, ollama: bool) -> tuple[AiderRun, str]:
    """aider against `hearth serve` at log level debug (uvicorn's access log), whose output
    goes to a file: a debug log would fill an undrained pipe and stall the server."""
    add_smol(home, "smollm2")
    log = tmp_path / "hearth.log"
    to_file = ["sh", "-c", f'exec "$@" >"{log}" 2>&1', "sh", sys.executable, "-m", "hearth"]
    with HearthProcess(home, "--log-level", "debug", launcher=to_file) as server:
        if ollama:
            env, args = {"OLLAMA_API_BASE": server.url}, ()
        else:
            env, args = {"OPENAI_API_KEY": "unused"}, ("--openai-api-base", f"{server.url}/v1")
        run = run_aider(tmp_path / "aider", model, MESSAGE, env, args)
    return run, log.read_text(encoding="utf-8")


@pytest.mark.timeout(900)  # the first run on a machine installs aider (support/aider.py)
@pytest.mark.parametrize(
    ("model", "route"),
    [
        ("openai/smollm2", "POST /v1/chat/completions"),
        ("ollama_chat/smollm2", "POST /api/chat"),
        ("ollama/smollm2", "POST /api/generate"),
    ],
    ids=["openai", "ollama_chat", "ollama_generate"],
)
def test_aider_answers_through_hearth(tmp_path: Path, home: Path, model: str, route: str) -> None:
    run, log = _run(tmp_path, home, model, ollama=model.startswith("ollama"))
    assert run.returncode == 0, run.output
    answer = _answer(run)
    assert answer, f"no answer in aider's transcript:\n{run.history}\n{run.output}"
    assert answer in run.output  # what aider showed the user
    for trouble in ("hit a token limit", "Error", "Traceback", "Retrying"):
        assert trouble not in run.output, run.output
    assert re.search(rf'"{route} HTTP/1.1" 200', log), log[-3000:]
    assert not re.search(r'HTTP/1.1" [45]\d\d', log), log[-3000:]  # nothing aider asked failed
