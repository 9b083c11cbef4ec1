"""The page's folded "Jan's remote providers" section, in headless Chromium (as
tests/test_web_browser.py drives it) against a real server on a Jan data folder: each provider
with its engine.json and a copy button, no key anywhere on the page (issue 25, point 5)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.core.config import load_settings
from hearth.services import Services
from tests.support.chromium import ARGS, CHROMIUM
from tests.support.janfolder import make_jan_folder
from tests.support.server import ThreadedServer
from tests.test_jan_providers import HEADER_SECRET, PROVIDERS, SECRET

pytestmark = pytest.mark.slow  # a browser: seconds

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("browser tests need Chromium: apt-get install chromium", allow_module_level=True)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    data = make_jan_folder(tmp_path / "data", providers=PROVIDERS)
    services = Services.create(load_settings(home=data, env={}))
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


def test_providers_show_folded_with_a_copyable_engine_json_and_no_key(
    page: tuple[Any, list[str]],
) -> None:
    tab, errors = page
    section = tab.wait_for_selector("section.jan-providers:not([hidden])")
    assert tab.inner_text("#jan-prov-title .count") == "7"
    assert not tab.is_visible("[aria-label='Jan provider openai']")  # folded until opened
    tab.click("section.jan-providers > details > summary")
    card = tab.wait_for_selector("[aria-label='Jan provider anthropic']")
    assert "ANTHROPIC_API_KEY" in card.inner_text() and "inactive in Jan" in card.inner_text()
    tab.click("[aria-label='Copy the engine.json for anthropic']")
    copied = json.loads(tab.evaluate("navigator.clipboard.readText()"))
    assert not card.query_selector(".model-json pre").is_visible()  # model.json folded too
    assert copied == {
        "type": "openai-compatible",
        "base_url": "https://api.anthropic.com/v1",
        "api_key_env": "ANTHROPIC_API_KEY",
    }
    evil = tab.inner_text("[aria-label='Jan provider evil']")
    assert "not http(s)" in evil and "Copy" not in evil
    html = tab.content()
    assert SECRET not in html and HEADER_SECRET not in html
    if os.environ.get("SCREENSHOT_TO"):  # to look at it: SCREENSHOT_TO=/tmp/x.png pytest ...
        section.screenshot(path=os.environ["SCREENSHOT_TO"])
    assert not errors, errors
