"""The web page on a Jan data folder, end to end in a real browser (headless Chromium through
Playwright, as tests/test_web_browser.py drives it) against a real server and SmolLM2 (issue 25).

What a Jan user does: the Models view lists Jan's models by their (nested) ids, a broken
model.yml with its error and nothing else; the picker tells apart two models Jan names alike and
chooses the nested-id one; a conversation (with a Jan assistant, whose parameters bound the
answer) is answered, saved in `<data>/threads/<uuid>/` and found again after a reload; the model
starts and stops from the page by its nested id; its editor opens, and a save or delete the
server refuses is shown, not thrown.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.chromium import ARGS, CHROMIUM
from support.janfolder import (
    add_downloaded_model,
    add_imported_model,
    make_jan_folder,
    read_model_yml,
    write_llamacpp_settings,
)
from support.server import ThreadedServer
from support.smollm import smollm2_path
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # a browser and SmolLM2

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("browser tests need Chromium: apt-get install chromium", allow_module_level=True)

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1"
TWIN = "Second-Org/SmolLM2-135M-Instruct-Q4_1"  # another publisher's copy: the same name
BROKEN = "bartowski/broken-model"
IMPORTED = "my-smol"
BRIEF = {
    "id": "brief",
    "object": "assistant",
    "name": "Brief",
    "avatar": "🪶",
    "description": "",
    "created_at": 1747029866.542,
    "model": "*",
    "instructions": "Answer in one short sentence.",
    "parameters": {"temperature": 0, "seed": 7, "max_output_tokens": 12},
    "tools": [],
    "file_ids": [],
    "metadata": {},
}
PROVIDER = {"provider": "openai", "active": True, "base_url": "https://api.openai.com/v1",
            "models": [{"id": "gpt-4o"}]}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web-jan")
    data = make_jan_folder(root / "data", providers=[PROVIDER])
    add_downloaded_model(data, SMOL, smollm2_path(), ctx_size=1024)
    # Jan's llama.cpp defaults: the editor shows them merged in, and must not write them back
    write_llamacpp_settings(data, {"n_gpu_layers": 0, "parallel": 1})
    outside = root / "Downloads" / "my-smol.gguf"  # the user's own file, outside the folder
    outside.parent.mkdir()
    outside.symlink_to(smollm2_path())
    add_imported_model(data, IMPORTED, outside)
    add_imported_model(data, TWIN, outside, name=SMOL.rsplit("/", 1)[-1])
    broken = data / "llamacpp" / "models" / BROKEN
    broken.mkdir(parents=True)
    (broken / "model.yml").write_text("model_path: [unclosed\n")
    (data / "assistants" / "brief").mkdir()
    (data / "assistants" / "brief" / "assistant.json").write_text(json.dumps(BRIEF), "utf-8")
    return data


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=data, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page and what went wrong on it: uncaught exceptions, console errors, refusals."""

    def __init__(self, browser: Any, base: str, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 800})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on(
            "console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}")
        )
        self.page.on("response", self._refused)
        self.page.set_default_timeout(30_000)

    def _refused(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status} {response.request.method} {response.url}")

    def open(self, hash_: str = "") -> Any:
        self.page.goto(f"{self.base}/{hash_}")
        self.page.wait_for_selector("html[data-ready=true]")
        return self.page

    def refused(self, status: int, method: str, path: str) -> None:
        """A refusal the test asked for: its response and the console's line about it."""
        mine = [e for e in self.errors if e.startswith(f"{status} {method} {self.base}{path}")]
        assert mine, (status, method, path, self.errors)
        console = "console: Failed to load resource: the server responded with a status of "
        console += str(status)
        self.errors = [e for e in self.errors if e not in mine and not e.startswith(console)]


@pytest.fixture
def tab(browser: Any, srv: ThreadedServer) -> Iterator[Tab]:
    tab = Tab(browser, srv.url)
    yield tab
    tab.context.close()
    assert not tab.errors, tab.errors


def row(model_id: str) -> str:
    return f"#models-body article.model-row[data-key='{model_id}']"


def test_models_view_lists_jans_models_by_id_and_the_broken_one_with_its_error(tab: Tab) -> None:
    page = tab.open("#/models")
    smol = page.wait_for_selector(row(SMOL))
    assert SMOL in smol.inner_text() and "Q4_1" in smol.inner_text()
    assert "Context 1,024" in smol.inner_text().replace("\n", " ")  # model.yml's ctx_size
    assert smol.get_attribute("aria-label") == f"SmolLM2-135M-Instruct-Q4_1 ({SMOL})"
    assert TWIN in page.inner_text(row(TWIN))
    imported = page.inner_text(row(IMPORTED)).replace("\n", " ")
    assert "Ready" in imported  # its file lies outside the folder
    assert "Context 8,192" in imported  # no ctx_size: the GGUF header's context length
    broken = page.inner_text(row(BROKEN))
    assert "Invalid" in broken and f"llamacpp/models/{BROKEN}/model.yml is not valid YAML" in broken
    assert "Size" not in broken  # an unreadable file has no facts to show
    assert page.query_selector(f"{row(BROKEN)} [aria-label='Edit {BROKEN}']") is None
    page.wait_for_selector("section.jan-providers:not([hidden])")  # Jan's provider, folded


def test_a_conversation_with_the_nested_id_model_is_answered_saved_and_found_again(
    tab: Tab, srv: ThreadedServer, data: Path
) -> None:
    page = tab.open()
    labels = page.locator("#model-select option").all_inner_texts()
    assert f"{SMOL} · Ready" in labels and f"{TWIN} · Ready" in labels  # alike names: the ids
    assert f"{IMPORTED} · Ready" in labels
    page.select_option("#model-select", SMOL)
    assert page.get_attribute("#model-select", "title") == SMOL
    page.wait_for_selector("#assistant-picker:not([hidden])")
    page.select_option("#assistant-select", "brief")
    page.fill("#composer-input", "Say hello.")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant .meta .figures", timeout=120_000)
    thread_id = page.evaluate("decodeURIComponent(location.hash.slice(4))")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", thread_id)
    folder = data / "threads" / thread_id
    thread = json.loads((folder / "thread.json").read_text("utf-8"))
    assert thread["assistants"][0]["model"]["id"] == SMOL
    assert thread["assistants"][0]["id"] == "brief"
    lines = [json.loads(x) for x in (folder / "messages.jsonl").read_text("utf-8").splitlines()]
    assert [m["role"] for m in lines] == ["user", "assistant"]
    answer = "".join(p["text"]["value"] for p in lines[1]["content"] if p["type"] == "text")
    assert lines[1]["status"] == "ready" and answer.strip()
    assert lines[1]["metadata"]["usage"]["completion_tokens"] <= 12  # the assistant's bound
    shown = page.inner_text(".message.assistant .content")
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    page.wait_for_selector(".message.assistant .content")
    assert page.inner_text(".message.user .bubble") == "Say hello."
    assert page.inner_text(".message.assistant .content") == shown
    assert page.input_value("#model-select") == SMOL
    assert page.is_visible(f".thread-item[data-id='{thread_id}']")
    httpx.post(f"{srv.url}/v1/models/{SMOL}/stop", timeout=60)  # leave the next test a cold model


def test_the_nested_id_model_starts_and_stops_from_the_models_view(
    tab: Tab, srv: ThreadedServer
) -> None:
    page = tab.open("#/models")
    page.click(f"[aria-label='Load {SMOL}']")
    page.wait_for_selector(f"#models-body [aria-label='{SMOL}, loaded'] .badge.running",
                           timeout=120_000)  # fmt: skip
    running = httpx.get(f"{srv.url}/v1/running", timeout=10).json()["data"]
    assert [r["id"] for r in running] == [SMOL]
    page.wait_for_selector(f"{row(SMOL)} [aria-label='Unload {SMOL}']")
    page.click(f"#models-body [aria-label='Unload {SMOL}']")
    page.wait_for_selector(f"#models-body [aria-label='{SMOL}, loaded']", state="detached")
    assert httpx.get(f"{srv.url}/v1/running", timeout=10).json()["data"] == []


def test_the_editor_opens_for_a_nested_id_and_a_refused_save_is_shown(tab: Tab, data: Path) -> None:
    yml = data / "llamacpp" / "models" / SMOL / "model.yml"
    before = yml.read_text()
    page = tab.open("#/models")
    page.click(f"[aria-label='Edit {SMOL}']")
    page.wait_for_selector("#model-dialog[open]")
    assert page.inner_text("#model-dialog-title") == "Edit SmolLM2-135M-Instruct-Q4_1"
    assert page.input_value("#edit-engine_parameters-ctx_len") == "1024"
    assert page.input_value("#edit-engine_parameters-ngl") == "0"  # Jan's default, shown
    assert json.loads(page.input_value("#edit-json"))["name"] == "SmolLM2-135M-Instruct-Q4_1"
    page.fill("#edit-model_parameters-temperature", "0.3")
    page.click("#model-form button[value=save]")
    page.wait_for_function(
        "() => !document.getElementById('model-dialog').open"
        " || !document.querySelector('#model-form .error-text').hidden"
    )
    if page.evaluate("document.getElementById('model-dialog').open"):  # Jan's writes not here
        error = page.inner_text("#model-form .error-text")
        assert SMOL in error and "Jan" in error, error
        assert yml.read_text() == before
        tab.refused(409, "PATCH", f"/v1/models/{SMOL.replace('/', '%2F')}")
        page.click("#model-form .dialog-actions button[type=button]")  # Cancel
        assert not page.evaluate("document.getElementById('model-dialog').open")
    else:  # Jan's writes landed: only the field changed is in model.yml, Jan's keys kept
        saved = wait_for(lambda: "0.3" in yml.read_text() and yml.read_text(), what="the edit")
        assert f"llamacpp/models/{SMOL}/model.gguf" in saved
        original = yaml.safe_load(before)
        assert read_model_yml(yml.parent) == {**original, "temperature": 0.3}
    page.wait_for_selector(row(SMOL))  # the view still works


def test_deleting_a_jan_model_from_the_page_keeps_the_users_file(tab: Tab, data: Path) -> None:
    outside = (data / "llamacpp" / "models" / IMPORTED / "model.yml").read_text()
    page = tab.open("#/models")
    page.click(f"[aria-label='Delete {IMPORTED}']")
    page.click("#confirm-ok")
    page.wait_for_function(
        "sel => !document.querySelector(sel) || document.querySelector('.toast.error')",
        arg=row(IMPORTED),
    )
    user_file = data.parent / "Downloads" / "my-smol.gguf"
    assert user_file.exists()  # never the user's own file
    toast = page.query_selector(".toast.error")
    if toast is not None:  # Jan's writes not here: refused, said so, nothing removed
        assert IMPORTED in toast.inner_text() and "Jan" in toast.inner_text()
        assert (data / "llamacpp" / "models" / IMPORTED / "model.yml").read_text() == outside
        tab.refused(409, "DELETE", f"/v1/models/{IMPORTED}")
        assert page.is_visible(row(IMPORTED))


@pytest.mark.parametrize("width", [360, 1280])
def test_long_nested_ids_wrap_and_never_widen_the_page(
    browser: Any, srv: ThreadedServer, data: Path, width: int
) -> None:
    long_id = "some-very-long-organisation-name/" + "Very-Long-Model-Name-2507-Distilled-Q4_K_M" * 2
    add_imported_model(data, long_id, data.parent / "Downloads" / "my-smol.gguf", name="long")
    tab = Tab(browser, srv.url, width)
    page = tab.open("#/models")
    page.wait_for_selector(row(long_id))
    facts = page.inner_text(f"{row(long_id)} .facts").replace("\n", " ")
    assert "Quantization Q4_1" in facts  # the file's header, not the id's "Q4_K_M"
    box = page.eval_on_selector(row(long_id), "el => el.getBoundingClientRect().right")
    assert box <= width and page.evaluate("document.documentElement.scrollWidth") <= width
    page.goto(f"{srv.url}/#/")
    page.wait_for_selector("html[data-ready=true]")
    page.select_option("#model-select", long_id)
    right = page.eval_on_selector("#model-select", "el => el.getBoundingClientRect().right")
    assert right <= width and page.evaluate("document.documentElement.scrollWidth") <= width
    tab.context.close()
    assert not tab.errors, tab.errors


def test_a_conversation_jan_wrote_opens_on_its_nested_model_and_goes_on(
    tab: Tab, srv: ThreadedServer, data: Path
) -> None:
    """As Jan 0.8 leaves one: a UUID folder, times in seconds and milliseconds, the model in
    `assistants[0].model` and `model` by its nested id."""
    thread_id = "0d5c1f8e-4b7a-4c1e-9f3a-2b6d8e1c7a90"
    folder = data / "threads" / thread_id
    folder.mkdir()
    model = {"id": SMOL, "engine": "llamacpp"}
    thread = {
        "id": thread_id,
        "object": "thread",
        "title": "Written by Jan 0.8",
        "assistants": [{"id": "model-only", "name": "Model", "model": model}],
        "model": {"id": SMOL, "provider": "llamacpp"},
        "created": 1751012639.307,
        "updated": 1751012639.307,
        "metadata": {"is_favorite": False, "order": 1},
    }
    (folder / "thread.json").write_text(json.dumps(thread, indent=2), "utf-8")
    lines = [
        {
            "id": f"01JYQ4W5R0000000000000000{n}",
            "object": "thread.message",
            "thread_id": thread_id,
            "role": role,
            "status": "ready",
            "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
            "created_at": 1751012639307 + n,
            "completed_at": 1751012639307 + n,
            "metadata": {},
        }
        for n, (role, text) in enumerate([("user", "Hi there."), ("assistant", "Hello!")])
    ]
    (folder / "messages.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    page = tab.open(f"#/t/{thread_id}")
    page.wait_for_selector(".message.assistant .content")
    assert page.inner_text("#chat-title") == "Written by Jan 0.8"
    assert page.input_value("#model-select") == SMOL
    page.click("#thread-settings")
    page.fill("#set-max-tokens", "6")
    page.fill("#set-temperature", "0")
    page.click("#settings-form button[value=save]")
    page.fill("#composer-input", "And goodbye.")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('.message.assistant .meta .figures').length === 1"
        " && document.querySelectorAll('.message.assistant').length === 2",
        timeout=120_000,
    )
    saved = [json.loads(x) for x in (folder / "messages.jsonl").read_text("utf-8").splitlines()]
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[:2] == lines  # Jan's lines as they were
    assert saved[3]["status"] == "ready" and saved[3]["metadata"]["usage"]["completion_tokens"] <= 6
    stored = httpx.get(f"{srv.url}/v1/threads/{thread_id}", timeout=10).json()
    assert stored["model"] == SMOL and stored["parameters"]["max_tokens"] == 6
    httpx.post(f"{srv.url}/v1/models/{SMOL}/stop", timeout=60)
