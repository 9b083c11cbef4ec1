"""The page's "Tools (MCP servers)" section, in headless Chromium (as tests/test_web_browser.py
drives it) against a real server (issue 26): the test server running with its tools, a server
that dies at start with its error and stderr, an entry that cannot be read; and, with none
configured, where to write mcp.json with an example that Hearth reads."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hearth.core.config import load_settings
from hearth.mcp.config import read_file
from hearth.services import Services
from tests.support.chromium import ARGS, CHROMIUM
from tests.support.server import ThreadedServer
from tests.test_cli_mcp import our_servers
from tests.test_mcp_hosts import TEST_SERVER

pytestmark = pytest.mark.slow  # a browser: seconds

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("browser tests need Chromium: apt-get install chromium", allow_module_level=True)

DIES = ["-c", "import sys; print('cannot find my config', file=sys.stderr); sys.exit(3)"]


@contextmanager
def models_view(home: Path) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    services = Services.create(load_settings(home=home, env={}))
    errors: list[str] = []
    with ThreadedServer(services) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        tab = context.new_page()
        tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        tab.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        tab.set_default_timeout(30_000)
        tab.goto(f"{server.url}/#/models")
        tab.wait_for_selector("html[data-ready=true]")
        yield tab, errors
        context.close()
        browser.close()


def screenshot(tab: Any, name: str) -> None:
    """To look at it: SCREENSHOT_TO=/tmp/shots pytest tests/test_web_mcp.py"""
    folder = os.environ.get("SCREENSHOT_TO")
    if folder:
        tab.locator("section.mcp-servers").screenshot(path=str(Path(folder) / f"{name}.png"))


def test_servers_show_state_tools_error_stderr_and_problems(home: Path) -> None:
    servers = {
        "test": {"command": sys.executable, "args": [TEST_SERVER]},
        "dies": {"command": sys.executable, "args": DIES},
        "bad": {"args": ["no command"]},
    }
    (home / "mcp.json").write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    with models_view(home) as (tab, errors):

        def card(name: str) -> Any:
            return tab.locator(f"[aria-label='MCP server {name}']")

        card("test").locator(".badge.running").wait_for()
        assert tab.inner_text("#mcp-title .count") == "2"
        test = card("test").inner_text()
        assert "program (stdio)" in test and str(home / "mcp.json") in test
        tools = card("test").locator(".mcp-tools li").all_inner_texts()
        assert "add Add two numbers." in tools and len(tools) == 7
        card("dies").locator(".badge.failed").wait_for()
        assert "Connection closed" in card("dies").locator(".error-box").inner_text()
        assert not card("dies").locator(".mcp-stderr pre").is_visible()  # folded
        card("dies").locator(".mcp-stderr summary").click()
        assert card("dies").locator(".mcp-stderr pre").inner_text() == "cannot find my config"
        problem = tab.locator(".mcp-problems .error-box").inner_text()
        assert "server 'bad'" in problem and "needs `command`" in problem
        assert "(yours)" in tab.inner_text(".mcp-files")
        screenshot(tab, "mcp-servers")
        assert our_servers()
        tab.click("[aria-label='Refresh the MCP servers']")
        card("test").locator(".badge.running").wait_for()
        assert not errors, errors
    assert not our_servers()


def test_none_configured_says_where_and_the_example_reads(home: Path) -> None:
    with models_view(home) as (tab, errors):
        howto = tab.locator(".mcp-howto")
        howto.wait_for()
        assert str(home / "mcp.json") in howto.inner_text()
        assert tab.inner_text("#mcp-title .count") == "0"
        tab.click("[aria-label='Copy the example mcp.json']")
        (home / "mcp.json").write_text(tab.evaluate("navigator.clipboard.readText()"))
        config = read_file(home / "mcp.json")
        assert config.problems == () and sorted(config.servers) == ["remote", "time"]
        screenshot(tab, "mcp-howto")
        assert not errors, errors
