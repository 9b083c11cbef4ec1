"""`hearth run` as a person uses it: in a pseudo-terminal (pexpect), against a real server and
the real SmolLM2 model. Line editing and history (readline), \"\"\" multi-line input, /set, /show,
/load, /clear, /bye and Ctrl-D, and --verbose timings; plus the pieces of chat.py alone.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.cli.chat import parse_option, read_message, request_options, verbose_lines
from hearth.cli.common import UsageError
from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

LEFT, UP = "\x1b[D", "\x1b[A"
PROMPT = ">>> "


@pytest.fixture
def served(home: Path) -> Iterator[ThreadedServer]:
    add_smol(home, "smol", model_parameters={"max_tokens": 8})
    add_smol(home, "smol2", model_parameters={"max_tokens": 8})
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        yield srv


def spawn(home: Path, port: int, *args: str) -> pexpect.spawn:
    env = {**os.environ, "HEARTH_PORT": str(port), "TERM": "xterm", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "hearth", "--home", str(home), "run", *args]
    child = pexpect.spawn(
        cmd[0], cmd[1:], env=env, encoding="utf-8", timeout=90, dimensions=(40, 200)
    )
    child.expect("Type /\\? for help")
    child.expect_exact(PROMPT)
    return child


def test_run_in_a_terminal(home: Path, served: ThreadedServer) -> None:
    child = spawn(home, served.port, "smol", "--verbose")
    child.sendline("/set parameter num_predict 3")
    child.expect("Set parameter 'num_predict' to '3'")
    child.sendline("/set system Answer in one word.")
    child.expect("Set system message")
    child.sendline('"""Hello')
    child.expect_exact("... ")
    child.sendline('there"""')
    child.expect(r"\n\s*eval count: +(\d+) token")
    assert int(child.match.group(1)) <= 3  # num_predict became max_tokens
    child.expect(r"eval rate: +[\d.]+ tokens/s")
    child.expect_exact(PROMPT)

    child.send("/shw" + LEFT + "o\r")  # readline: the cursor moved back, "o" inserted
    child.expect("Parameters")
    child.expect_exact(PROMPT)
    child.sendline("/show parameters")
    child.expect(r"num_predict +3")
    child.sendline("/show system")
    child.expect("Answer in one word.")
    child.sendline("/set parameter num_gpu 1")
    child.expect("Unknown parameter 'num_gpu'")
    child.sendline("/load smol2")
    child.expect("Loaded smol2")
    child.sendline("/clear")
    child.expect("conversation forgotten")
    child.sendline("/?")
    child.expect("/set parameter NAME VALUE")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    history = (home / "history").read_text()
    assert "/show system" in history and "/bye" in history
    again = spawn(home, served.port, "smol")
    again.send(UP + "\r")  # the last line of the earlier session: /bye
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0


def test_ctrl_d_leaves_and_num_ctx_reloads(home: Path, served: ThreadedServer) -> None:
    child = spawn(home, served.port, "smol")
    child.sendline("/set parameter num_ctx 512")
    child.expect("Set parameter 'num_ctx' to '512'")
    child.expect_exact(PROMPT)
    with served.http() as http:
        loaded = {m["id"]: m for m in http.get("/v1/running").json()["data"]}
    assert loaded["smol"]["status"] == "running"
    child.sendline("Hi")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_read_message_joins_triple_quoted_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO('"""one\ntwo\nthree"""\n"""inline"""\nplain\n'))
    assert read_message(False) == "one\ntwo\nthree"
    assert read_message(False) == "inline"
    assert read_message(False) == "plain"
    assert read_message(False) is None


def test_options_map_to_request_fields_and_are_checked() -> None:
    assert parse_option("NUM_PREDICT", "12") == ("num_predict", 12)
    assert parse_option("temperature", "0.5") == ("temperature", 0.5)
    with pytest.raises(UsageError, match="whole number"):
        parse_option("seed", "x")
    with pytest.raises(UsageError, match="Unknown parameter"):
        parse_option("num_gpu", "1")
    fields = request_options({"num_predict": 12, "repeat_penalty": 1.1, "num_ctx": 512})
    assert fields == {"max_tokens": 12, "repeat_penalty": 1.1}


def test_verbose_lines_prefer_the_engines_timings() -> None:
    stats = {"started": 0.0, "first": 0.25, "ended": 1.25, "usage": {"completion_tokens": 10}}
    lines = verbose_lines(stats)
    assert "time to first token:  0.250s" in lines and "eval count:           10 token(s)" in lines
    assert any(re.search(r"eval rate: +10\.00 tokens/s", line) for line in lines)  # 10 / 1 s
    stats["timings"] = {"predicted_n": 10, "predicted_per_second": 55.5, "prompt_n": 7}
    assert "eval rate:            55.50 tokens/s" in verbose_lines(stats)
    assert "prompt eval count:    7 token(s)" in verbose_lines(stats)
