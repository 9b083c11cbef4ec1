"""MCP tools in the page, end to end in a real browser (headless Chromium through Playwright)
against a real Hearth, SmolLM2 and real MCP servers (issue 26, point 2): a conversation turns a
server's tools on in its settings, the model's call waits for the user's approval on the page,
runs once approved, shows its result in a folded card, and reloads the same.

The servers: tests/support/mcp_server.py (written with the SDK; `add` only) and PyPI's
`mcp-server-time` (`get_current_time`). SmolLM2 (temperature 0, a seed) is given a Hermes-style
tool template and the conversation's "Use a tool: on the first turn" forces its first round to
call (Hearth constrains its output to a call), so the test does not hang on a model's whim.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chromium import ARGS, CHROMIUM
from support.engines import add_smol
from support.server import ThreadedServer
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.services import Services
from tests.test_mcp_hosts import TEST_SERVER

pytestmark = pytest.mark.slow  # a browser, SmolLM2 and MCP servers

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("browser tests need Chromium: apt-get install chromium", allow_module_level=True)

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
PINNED = {"temperature": 0, "seed": 42, "max_tokens": 40}
SERVERS = {
    "test": {"command": sys.executable, "args": [TEST_SERVER], "timeout": 20},
    "time": {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "timeout": 20,
    },
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-tools") / "home"
    (path / "models").mkdir(parents=True)
    add_smol(path, "smol-tools", {"chat_template": HERMES}, model_parameters=PINNED)
    (path / "mcp.json").write_text(json.dumps({"mcpServers": SERVERS}))
    return path


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, srv: ThreadedServer) -> Iterator[Any]:
    """A page; any uncaught exception, console error or refused request fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    tab.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    tab.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    tab.set_default_timeout(60_000)
    tab.goto(f"{srv.url}/")
    tab.wait_for_selector("html[data-ready=true]")
    yield tab
    context.close()
    assert not errors, errors


def turn_on(page: Any, server: str, only: str) -> None:
    """In a new chat's settings: `server` on with only its tool `only`, a tool forced first."""
    page.click("#thread-settings")
    box = page.wait_for_selector(f"#set-tools-list input[data-server='{server}']")
    box.check()
    row = page.locator(".tool-server-row", has=page.locator(f"input[data-server='{server}']"))
    for tool in row.locator("input[data-tool]").all():
        if tool.get_attribute("data-tool") != only:
            tool.uncheck()
    page.select_option("#set-tool-choice", "required")
    page.click("#settings-form button[value=save]")


def ask_and_approve(page: Any, text: str, decision: str) -> Any:
    """Send `text`, wait for the approval card, choose; the settled answer's element."""
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")
    card = page.wait_for_selector(".message.assistant.last .approval")
    assert "Run" in card.inner_text()
    card.query_selector(f"button[data-decision='{decision}']").click()
    page.wait_for_selector(".message.assistant.last:not([aria-busy]) .meta .figures")
    assert not page.query_selector(".approval")
    return page.query_selector(".message.assistant.last")


def thread_of(page: Any) -> str:
    return str(page.evaluate("decodeURIComponent(location.hash.slice(4))"))


def saved_call(home: Path, thread_id: str) -> dict[str, Any]:
    lines = (home / "threads" / thread_id / "messages.jsonl").read_text().splitlines()
    answer = json.loads(lines[-1])
    assert answer["role"] == "assistant" and answer["status"] == "ready"
    [call] = answer["metadata"]["tool_calls"]
    assert call["state"] == "completed"
    return call  # type: ignore[no-any-return]


def thread_json(home: Path, thread_id: str) -> dict[str, Any]:
    return json.loads((home / "threads" / thread_id / "thread.json").read_text())  # type: ignore[no-any-return]


def card_result(answer: Any) -> str:
    card = answer.query_selector("details.tool-call")
    card.query_selector("summary").click()
    return str(card.query_selector(".tool-result").inner_text())


def test_approve_a_test_server_call_see_its_result_and_reload(page: Any, home: Path) -> None:
    turn_on(page, "test", "add")
    answer = ask_and_approve(page, "Add 2 and 3.", "once")
    thread_id = thread_of(page)
    call = saved_call(home, thread_id)
    args = json.loads(call["tool"]["function"]["arguments"])
    assert call["tool"]["function"]["name"] == "add"
    assert (
        card_result(answer) == str(args["a"] + args["b"]) == call["response"]["content"][0]["text"]
    )
    assert "add" in answer.query_selector("details.tool-call summary").inner_text()

    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    again = page.wait_for_selector(".message.assistant details.tool-call")
    assert not page.query_selector(".approval")
    again.query_selector("summary").click()
    assert again.query_selector(".tool-result").inner_text() == str(args["a"] + args["b"])


def test_approve_mcp_server_time_for_the_conversation_and_reload(page: Any, home: Path) -> None:
    turn_on(page, "time", "get_current_time")
    answer = ask_and_approve(page, "What time is it in Paris?", "thread")
    thread_id = thread_of(page)
    call = saved_call(home, thread_id)
    assert call["tool"]["function"]["name"] == "get_current_time"
    shown = card_result(answer)
    assert shown == call["response"]["content"][0]["text"] and shown
    thread = thread_json(home, thread_id)
    assert thread["metadata"]["mcp"]["servers"][0]["name"] == "time"
    assert [(a["server"], a["tool"]) for a in thread["metadata"]["mcp_approved"]] == [
        ("time", "get_current_time")
    ]
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    card = page.wait_for_selector(".message.assistant details.tool-call")
    card.query_selector("summary").click()
    assert card.query_selector(".tool-result").inner_text() == shown
    # allowed for the conversation: the next call runs without asking
    page.fill("#composer-input", "And in Tokyo?")
    page.keyboard.press("Enter")
    wait_for(
        lambda: len((home / "threads" / thread_id / "messages.jsonl").read_text().splitlines()) == 4
    )
    page.wait_for_selector(".message.assistant.last:not([aria-busy]) .meta .figures")
    assert not page.query_selector(".approval")
    assert saved_call(home, thread_id)["tool"]["function"]["name"] == "get_current_time"
    # the conversation's settings forget it: the next call asks again
    page.click("#thread-settings")
    forget = page.wait_for_selector("#set-tools-forget-row:not([hidden])")
    assert "get_current_time from time" in forget.inner_text()
    page.wait_for_selector("#set-tools-list input[data-server='time']:checked")
    page.check("#set-tools-forget")
    page.click("#settings-form button[value=save]")
    wait_for(lambda: "mcp_approved" not in thread_json(home, thread_id)["metadata"])
    assert thread_json(home, thread_id)["metadata"]["mcp"]["servers"][0]["name"] == "time"
    page.fill("#composer-input", "And in Lima?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant.last .approval")
