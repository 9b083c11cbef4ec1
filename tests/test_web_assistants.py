"""The page's assistant picker in a real browser (headless Chromium through Playwright, as in
test_web_browser.py) against a real server, SmolLM2 and a home holding Jan's assistants.

A home of its own: the assistants here would change what every other page test's new chat
starts with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chromium import ARGS, CHROMIUM
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # a browser and SmolLM2


def _missing() -> str | None:
    if CHROMIUM is None:
        return "browser tests need Chromium: apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need Playwright: pip install -e '.[test]'"
    return None


MISSING = _missing()
if MISSING and not os.environ.get("CI"):
    pytest.skip(MISSING, allow_module_level=True)

JAN = {
    "id": "jan",
    "object": "assistant",
    "name": "Jan",
    "avatar": "👋",
    "description": "Jan's default.",
    "created_at": 1747029866.542,
    "model": "*",
    "instructions": "You are a helpful AI assistant.\n\nCurrent date: {{current_date}}",
    "parameters": {},
    "tools": [],
    "file_ids": [],
    "metadata": {},
}
WRITER = {
    **JAN,
    "id": "writer",
    "name": "Alpha writer",
    "avatar": "✍️",
    "instructions": "Answer in one word.",
    "parameters": {"temperature": 0, "seed": 7, "max_output_tokens": 4},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("web-assistants") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol", model_parameters={"max_tokens": 8})
    for raw in (JAN, WRITER):
        folder = home / "assistants" / raw["id"]
        folder.mkdir(parents=True)
        (folder / "assistant.json").write_text(json.dumps(raw, indent=2), "utf-8")
    (home / "assistants" / "broken").mkdir()
    (home / "assistants" / "broken" / "assistant.json").write_text("{", "utf-8")
    return home


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture
def page(srv: ThreadedServer) -> Iterator[Any]:
    if MISSING:
        pytest.fail(MISSING)
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        tab.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        tab.set_default_timeout(30_000)
        tab.goto(srv.url + "/")
        tab.wait_for_selector("html[data-ready=true]")
        yield tab
        browser.close()
    assert not errors, errors


def options(page: Any) -> list[str]:
    return [o.strip() for o in page.locator("#assistant-select option").all_inner_texts()]


def test_a_new_chat_picks_an_assistant_and_the_conversation_keeps_it(page: Any, home: Path) -> None:
    page.wait_for_selector("#assistant-picker:not([hidden])")
    assert options(page) == ["No assistant", "👋 Jan", "✍️ Alpha writer"]  # broken: left out
    assert page.input_value("#assistant-select") == "jan"  # Jan's default, nothing remembered
    page.select_option("#assistant-select", "writer")
    assert page.evaluate("localStorage.getItem('last-used-assistant')") == "writer"
    page.fill("#composer-input", "Name a fruit.")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant .meta .figures", timeout=60_000)
    thread_id = page.evaluate("decodeURIComponent(location.hash.slice(4))")
    raw = json.loads((home / "threads" / thread_id / "thread.json").read_text("utf-8"))
    first = raw["assistants"][0]
    assert first["id"] == "writer" and first["instructions"] == "Answer in one word."
    assert (first["model"]["id"], first["model"]["engine"]) == ("smol", "llamacpp")
    # the header shows the conversation's assistant, fixed; the settings name it
    assert page.is_disabled("#assistant-select") and options(page) == ["✍️ Alpha writer"]
    page.click("#thread-settings")
    assert "Alpha writer" in page.inner_text("#set-assistant")
    assert page.input_value("#set-instructions") == "Answer in one word."
    assert page.get_attribute("#set-max-tokens", "placeholder") == "assistant: 4"
    page.keyboard.press("Escape")
    # a new chat remembers the last one used
    page.click("#new-chat")
    page.wait_for_selector("#assistant-select:not([disabled])")
    assert page.input_value("#assistant-select") == "writer"
    # a conversation started without one says so, and the choice is remembered too
    page.select_option("#assistant-select", "")
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    assert page.input_value("#assistant-select") == ""
