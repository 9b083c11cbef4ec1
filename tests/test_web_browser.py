"""The web page in a real browser: headless Chromium (the system's `chromium`, driven by
Playwright) against a real Hearth server and the real SmolLM2 model.

One browser for the module and one page per test. Every page records what it loads and what it
logs: a request to anything but the server, a console error or an uncaught exception fails the
test that caused it. Without Chromium the module is skipped with a one-line reason, except in CI
(`CI` set), where a missing browser fails: `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.chromium import ARGS, CHROMIUM
from support.engines import add_smol
from support.fault_server import FaultServer
from support.gguf_factory import gguf_bytes
from support.jan_threads import THINK, TID, jan_thread_files
from support.server import ThreadedServer
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

KEY = "k3y-0123456789abcdef"
PULLED = gguf_bytes(name="Web Pulled", context_length=2048, n_tensors=4, tensor_shape=(256, 256))
EVIL = (
    "Here:\n\n<img src=x onerror=\"window.__pwned='img'\">\n\n"
    "<script>window.__pwned='script'</script>\n\n"
    "[click](javascript:window.__pwned='link') and ![pic](http://example.invalid/p.png)\n\n"
    '<a href="#" onclick="window.__pwned=\'click\'">x</a> <iframe src="/"></iframe>\n\n'
    "```html\n<script>window.__pwned='code'</script>\n```\n"
)


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if MISSING:  # in CI: .ci/run installs the browser, so a missing one is a failure
        pytest.fail(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web") / "home"
    (path / "models").mkdir(parents=True)
    add_smol(path, "smol", model_parameters={"max_tokens": 24})
    add_smol(path, "smol-edit")
    # a projector makes a model "vision" (only the page's side is tested: this one is fake)
    add_smol(path, "smol-vision", {"mmproj": "mmproj-smol.gguf"})
    (path / "models" / "smol-vision" / "mmproj-smol.gguf").write_bytes(b"GGUF")
    return path


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


class Page:
    """A page plus what it did: requests, console errors, uncaught exceptions."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on(
            "response",
            lambda r: (
                r.status >= 400 and self.errors.append(f"{r.status} {r.url} {r.text()[:300]}")
            ),
        )
        page.set_default_timeout(30_000)

    def open(self, hash_: str = "") -> Any:
        self.page.goto(f"{self.base}/{hash_}")
        self.page.wait_for_selector("html[data-ready=true]")
        return self.page

    def check(self) -> None:
        outside = [
            u for u in self.requests if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))
        ]
        assert not outside, f"the page loaded from elsewhere: {outside}"
        assert not self.errors, self.errors


@pytest.fixture
def web(browser: Any, srv: ThreadedServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = Page(context.new_page(), srv.url)
    yield page
    context.close()
    page.check()


def api(srv: ThreadedServer, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, srv.url + path, json=body, timeout=60)
    assert response.status_code < 400, response.text
    return response.json()


def thread_dir(home: Path, thread_id: str) -> Path:
    return home / "threads" / thread_id


def jsonl(home: Path, thread_id: str) -> list[dict[str, Any]]:
    text = (thread_dir(home, thread_id) / "messages.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p.get("type") == "text")


def inner(element: Any, selector: str) -> str:
    """The text of `selector` inside an element handle."""
    found = element.query_selector(selector)
    assert found is not None, selector
    return str(found.inner_text())


def current_thread(page: Any) -> str:
    return page.evaluate("decodeURIComponent(location.hash.slice(4))")


# ---- chat ---------------------------------------------------------------------------------

#: Records the answer's length each time the page changes it while the cursor shows.
WATCH_STREAMING = """
window.streamedLengths = [];
new MutationObserver(() => {
  const growing = document.querySelector(".message.assistant .content.cursor");
  if (growing) window.streamedLengths.push(growing.textContent.length);
}).observe(document.body, {subtree: true, childList: true, characterData: true,
                           attributes: true, attributeFilter: ["class"]});
"""


def test_a_message_streams_its_answer_onto_the_page_and_into_the_file(
    web: Page, home: Path
) -> None:
    page = web.open()
    # The answer may stream in a third of a second on a quiet machine: record what the page
    # shows as it happens rather than wait for a moment that may already have passed.
    page.evaluate(WATCH_STREAMING)
    page.fill("#composer-input", "Say hello to the fireplace.")
    page.keyboard.press("Enter")
    loading = page.wait_for_selector("#loading-bar:not([hidden])")  # the model loads first
    assert "Loading smol" in loading.inner_text()
    figures = page.wait_for_selector(".message.assistant .meta .figures", timeout=60_000)
    seen = page.evaluate("window.streamedLengths")
    assert len(set(seen)) >= 2, f"the answer was not shown token by token: {seen}"
    assert "tokens/s" in figures.inner_text() and "first token" in figures.inner_text()
    shown = page.inner_text(".message.assistant .content").strip()
    assert shown
    thread_id = current_thread(page)
    user, answer = jsonl(home, thread_id)
    assert user["role"] == "user" and text_of(user) == "Say hello to the fireplace."
    assert answer["role"] == "assistant" and answer["status"] == "ready"
    assert answer["metadata"]["timings"]["predicted_per_second"] > 0
    words = [w for w in text_of(answer).split() if w.isalpha()]
    assert all(w in shown for w in words)
    # the sidebar lists it, newest first; a reload finds it again
    assert page.inner_text(".thread-item.active .title").startswith("Say hello")
    page.reload()
    page.wait_for_selector("html[data-ready=true]")
    assert page.inner_text(".message.user .bubble") == "Say hello to the fireplace."


def test_stop_ends_the_answer_and_it_is_kept_as_stopped(
    web: Page, srv: ThreadedServer, home: Path
) -> None:
    thread = api(
        srv,
        "POST",
        "/v1/threads",
        {
            "title": "A long story",
            "model": "smol",
            "parameters": {"max_tokens": 2000, "ignore_eos": True},
        },
    )
    page = web.open(f"#/t/{thread['id']}")
    page.fill("#composer-input", "Tell me a very long story.")
    page.click("#send-button")
    page.wait_for_function(
        "() => { const c = document.querySelector('.message.assistant .content');"
        " return c && !c.querySelector('.prompt-progress') && c.innerText.trim().length > 20; }"
    )
    page.click("#stop-button")
    page.wait_for_selector(".message.assistant .tag.warn")  # "Stopped"
    assert page.is_visible("#send-button") and not page.is_visible("#stop-button")
    answer = wait_for(
        lambda: next(
            (
                m
                for m in jsonl(home, thread["id"])
                if m["role"] == "assistant" and m["status"] != "pending"
            ),
            None,
        ),
        what="the stopped answer",
    )
    assert answer["status"] == "stopped" and len(text_of(answer)) > 20


def test_settings_regenerate_and_edit_and_resend(
    web: Page, srv: ThreadedServer, home: Path
) -> None:
    page = web.open()
    page.click("#thread-settings")
    page.fill("#set-instructions", "You answer briefly.")
    page.fill("#set-max-tokens", "6")
    page.fill("#set-temperature", "0.2")
    page.fill("#set-ctx", "2048")  # the model is (re)loaded with this context
    page.click("#settings-form button[value=save]")
    page.fill("#composer-input", "Name a colour.")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant .meta .figures", timeout=60_000)
    thread_id = current_thread(page)
    saved = api(srv, "GET", f"/v1/threads/{thread_id}")
    assert saved["instructions"] == "You answer briefly."
    assert saved["parameters"] == {"max_tokens": 6, "temperature": 0.2}
    assert saved["settings"] == {"ctx_len": 2048}
    running = {r["id"]: r for r in api(srv, "GET", "/v1/running")["data"]}
    assert running[saved["model"]]["engine_parameters"]["ctx_len"] == 2048
    first = jsonl(home, thread_id)[-1]["id"]
    page.hover(".message.assistant")
    page.click(".message.assistant [aria-label='Regenerate the answer']")

    def regenerated() -> bool:
        last = jsonl(home, thread_id)[-1]
        return last["role"] == "assistant" and last["id"] != first and last["status"] == "ready"

    wait_for(regenerated, what="a regenerated answer")
    assert len(jsonl(home, thread_id)) == 2
    page.wait_for_selector(".message.assistant .meta .figures")
    page.hover(".message.user")
    page.click(".message.user [aria-label='Edit and resend']")
    page.fill(".edit-box textarea", "Name a fruit.")
    page.click(".edit-box .button.primary")

    def resent() -> bool:
        messages = jsonl(home, thread_id)
        return (
            text_of(messages[0]) == "Name a fruit."
            and len(messages) == 2
            and (messages[-1]["role"] == "assistant" and messages[-1]["status"] == "ready")
        )

    wait_for(resent, what="the edited exchange")
    page.wait_for_function(
        "() => document.querySelector('.message.user .bubble')?.innerText === 'Name a fruit.'"
    )


def test_a_jan_thread_written_on_disk_appears_and_search_finds_it(web: Page, home: Path) -> None:
    page = web.open()
    folder = thread_dir(home, "jan_1700000000")
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text(
        json.dumps(
            {
                "id": "jan_1700000000",
                "object": "thread",
                "title": "Written by Jan",
                "assistants": [
                    {
                        "assistant_id": "jan",
                        "assistant_name": "Jan",
                        "model": {"id": "smol", "settings": {}, "parameters": {}},
                    }
                ],
                "created": 1700000000000,
                "updated": 1700000000000,
                "metadata": {},
            }
        )
    )
    line = {
        "id": "01HF0000000000000000000000",
        "object": "thread.message",
        "thread_id": "jan_1700000000",
        "assistant_id": "jan",
        "role": "user",
        "content": [{"type": "text", "text": {"value": "Marmalade on toast", "annotations": []}}],
        "status": "ready",
        "created": 1700000000000,
        "updated": 1700000000000,
        "metadata": {},
    }
    (folder / "messages.jsonl").write_text(json.dumps(line) + "\n")
    item = page.wait_for_selector(".thread-item[data-id=jan_1700000000]", timeout=15_000)
    assert "Written by Jan" in item.inner_text()
    page.fill("#thread-search", "marmalade")  # by the text of a message
    page.wait_for_function("() => document.querySelectorAll('.thread-item').length === 1")
    page.click(".thread-item a")
    page.wait_for_selector(".message.user .bubble")
    assert page.inner_text(".message.user .bubble") == "Marmalade on toast"
    assert page.inner_text("#chat-title") == "Written by Jan"


def test_today_jan_reasoning_and_tool_calls_show_folded(web: Page, home: Path) -> None:
    """Jan 0.6-0.8's messages: inline <think> and `reasoning` parts fold as reasoning,
    metadata.tool_calls and `tool_call` parts show as calls, a torn line is named."""
    thread, lines = jan_thread_files()
    evil = '<img src=x onerror="window.__pwned=1">'
    call = {"tool": {"function": {"name": evil, "arguments": evil}}, "response": evil}
    lines.append(
        json.dumps(
            {
                "id": "01JZ0000000000000000000006",
                "role": "assistant",
                "status": "ready",
                "content": [{"type": "text", "text": {"value": f"<think>{evil}</think>Done."}}],
                "metadata": {"tool_calls": [call]},
            }
        )
    )
    folder = thread_dir(home, TID)
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text(json.dumps(thread, indent=2), encoding="utf-8")
    (folder / "messages.jsonl").write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    page = web.open(f"#/t/{TID}")
    page.wait_for_selector(".message.assistant .content")
    answers = page.query_selector_all(".message.assistant")
    assert len(answers) == 3 and len(page.query_selector_all(".message.user")) == 3
    first = answers[0]
    assert inner(first, ".content").strip() == "Let me check."  # no <think> in the answer
    reasoning = first.query_selector("details.reasoning")
    assert reasoning is not None and reasoning.get_attribute("open") is None  # folded
    assert reasoning.inner_text().strip() == "Reasoning"  # only the summary while folded
    reasoning.click()
    assert THINK in reasoning.inner_text()
    call = first.query_selector("details.tool-call")
    assert call is not None and "get_weather" in call.inner_text()
    call.query_selector("summary").click()
    assert '"city": "Paris"' in inner(call, ".tool-args")
    assert inner(call, ".tool-result") == "18 C and sunny"
    second = answers[1]
    assert inner(second, ".content").strip() == "Rain is expected."
    assert second.query_selector("details.reasoning") is not None
    assert "get_forecast" in inner(second, "details.tool-call summary")
    note = page.inner_text(".skipped-note")
    assert "Line 3" in note and "messages.jsonl" in note
    assert "<think>" not in page.inner_text("#messages")
    third = answers[2]  # reasoning and tool calls from a file are text, never markup
    third.query_selector("details.reasoning summary").click()
    third.query_selector("details.tool-call summary").click()
    assert inner(third, "details.tool-call summary") == f"Tool call: {evil}"
    assert inner(third, ".reasoning-text") == inner(third, ".tool-result") == evil
    assert page.evaluate("window.__pwned") is None
    assert not third.query_selector("details img")


def test_a_long_conversation_opens_at_its_end_and_shows_earlier_messages_on_demand(
    web: Page, srv: ThreadedServer, home: Path
) -> None:
    count = 1103  # more than two pages of 500
    created = api(srv, "POST", "/v1/threads", {"title": "Long talk"})
    lines = [
        {
            "id": f"msg_{i:05d}",
            "object": "thread.message",
            "thread_id": created["id"],
            "role": "user" if i % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": {"value": f"Line number {i}", "annotations": []}}],
            "status": "ready",
            "created": 1700000000000 + i,
            "metadata": {},
        }
        for i in range(count)
    ]
    (thread_dir(home, created["id"]) / "messages.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    page = web.open(f"#/t/{created['id']}")
    page.wait_for_selector(".message .bubble, .message .content")
    shown = "document.querySelectorAll('#messages .message').length"
    assert page.evaluate(shown) == 500
    assert f"Line number {count - 1}" in page.inner_text("#messages")  # the newest is drawn
    assert "Line number 0\n" not in page.inner_text("#messages") + "\n"
    page.dblclick("#messages .earlier")  # two clicks, one page of earlier messages
    page.wait_for_function(f"() => {shown} === 1000")
    page.wait_for_timeout(300)
    assert page.evaluate(shown) == 1000
    page.click("#messages .earlier")
    page.wait_for_function(f"() => {shown} === {count}")
    assert not page.query_selector("#messages .earlier")  # nothing older left
    first = page.query_selector_all("#messages .message")[0].inner_text()
    assert "Line number 0" in first


def test_rename_and_delete_a_conversation(web: Page, srv: ThreadedServer, home: Path) -> None:
    thread = api(srv, "POST", "/v1/threads", {"title": "Old name", "model": "smol"})
    page = web.open()
    selector = f".thread-item[data-id='{thread['id']}']"
    page.wait_for_selector(selector)
    page.click(f"{selector} [aria-label^='Rename']")
    page.fill(f"{selector} input", "New name")
    page.keyboard.press("Enter")
    wait_for(lambda: api(srv, "GET", f"/v1/threads/{thread['id']}")["title"] == "New name")
    page.click(f"{selector} [aria-label^='Delete']")
    page.click("#confirm-ok")
    page.wait_for_selector(selector, state="detached")
    assert not thread_dir(home, thread["id"]).exists()


def test_export_then_import_a_conversation(web: Page, srv: ThreadedServer) -> None:
    thread = api(srv, "POST", "/v1/threads", {"title": "Travelling", "model": "smol"})
    api(srv, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "Bags?"})
    exported = httpx.get(f"{srv.url}/v1/threads/{thread['id']}/export", timeout=10).content
    page = web.open()
    page.set_input_files(
        "#thread-import-input",
        files=[{"name": "t.json", "mimeType": "application/json", "buffer": exported}],
    )
    page.wait_for_function(
        "id => location.hash.startsWith('#/t/') && !location.hash.endsWith(id)", arg=thread["id"]
    )
    page.wait_for_selector(".message.user .bubble")
    assert page.inner_text(".message.user .bubble") == "Bags?"
    assert page.inner_text("#chat-title") == "Travelling"


def test_markdown_from_the_model_is_rendered_inert(web: Page, srv: ThreadedServer) -> None:
    thread = api(srv, "POST", "/v1/threads", {"title": "Hostile answer", "model": "smol"})
    api(srv, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "hi"})
    api(srv, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "assistant", "content": EVIL})
    page = web.open(f"#/t/{thread['id']}")
    content = page.wait_for_selector(".message.assistant .content")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    for tag in ("img", "script", "iframe"):
        assert content.query_selector(tag) is None, tag
    hrefs = [a.get_attribute("href") or "" for a in content.query_selector_all("a")]
    assert not any(h.lower().startswith("javascript:") for h in hrefs)
    assert all(a.get_attribute("onclick") is None for a in content.query_selector_all("a"))
    assert "window.__pwned='code'" in content.inner_text()  # code is shown as text
    assert content.query_selector(".codeblock .copy") is not None
    assert not any("example.invalid" in u for u in web.requests)


def png(width: int, height: int) -> bytes:
    """A plain orange PNG, written by hand (no imaging library in the test extras)."""
    rows = b"".join(b"\x00" + b"\xc2\x41\x0c" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def test_images_attach_only_for_vision_models_and_are_shrunk(web: Page) -> None:
    page = web.open()
    page.select_option("#model-select", "smol")
    assert not page.is_visible("#attach-button")
    page.select_option("#model-select", "smol-vision")
    page.wait_for_selector("#attach-button", state="visible")
    picture = {"name": "wide.png", "mimeType": "image/png", "buffer": png(3000, 300)}
    page.set_input_files("#attach-input", files=[picture])
    preview = page.wait_for_selector(".attachment img")
    size = preview.evaluate("img => [img.naturalWidth, img.naturalHeight, img.src.slice(0, 23)]")
    assert size == [1024, 102, "data:image/jpeg;base64,"]
    page.click("[aria-label='Remove image 1']")
    page.wait_for_selector(".attachment img", state="detached")
    page.select_option("#model-select", "smol")


# ---- models -------------------------------------------------------------------------------


def test_models_view_lists_status_and_facts_and_loads_a_model(web: Page, home: Path) -> None:
    (home / "models" / "broken").mkdir(exist_ok=True)
    (home / "models" / "broken" / "model.json").write_text("{nope")
    page = web.open("#/models")
    row = page.wait_for_selector("article.model-row[aria-label=broken]")
    assert "not valid JSON" in row.inner_text() and "Invalid" in row.inner_text()
    smol = page.wait_for_selector("article.model-row[data-key=smol-edit]")
    assert "Context" in smol.inner_text() and "MB" in smol.inner_text()
    page.click("[aria-label='Load smol-edit']")
    loaded = page.wait_for_selector(
        "#models-body [aria-label='smol-edit, loaded'] .badge.running", timeout=60_000
    )
    loaded = page.wait_for_selector("#models-body [aria-label='smol-edit, loaded']")
    assert "Memory" in loaded.inner_text() and "Unloads in" in loaded.inner_text()
    page.click("#models-body [aria-label='Unload smol-edit']")
    page.wait_for_selector("#models-body [aria-label='smol-edit, loaded']", state="detached")
    (home / "models" / "broken" / "model.json").unlink()
    (home / "models" / "broken").rmdir()


def test_edit_a_models_parameters_in_the_form_and_as_json(web: Page, home: Path) -> None:
    page = web.open("#/models")
    page.click("[aria-label='Edit smol-edit']")
    page.fill("#edit-model_parameters-temperature", "0.3")
    page.fill("#edit-engine_parameters-ctx_len", "2048")
    page.click("#model-form button[value=save]")
    path = home / "models" / "smol-edit" / "model.json"
    wait_for(
        lambda: json.loads(path.read_text()).get("model_parameters", {}).get("temperature") == 0.3
    )
    raw = json.loads(path.read_text())
    assert (
        raw["engine_parameters"]["ctx_len"] == 2048 and raw["engine_parameters"]["cpu_threads"] == 2
    )
    page.click("[aria-label='Edit smol-edit']")
    page.click("#tab-json")
    edited = json.loads(page.input_value("#edit-json"))
    edited["description"] = "edited as JSON"
    del edited["model_parameters"]["temperature"]
    page.fill("#edit-json", json.dumps(edited))
    page.click("#model-form button[value=save]")
    wait_for(lambda: json.loads(path.read_text()).get("description") == "edited as JSON")
    assert "temperature" not in json.loads(path.read_text()).get("model_parameters", {})


def test_pull_shows_live_progress_and_cancel_stops_it(web: Page, home: Path) -> None:
    with FaultServer() as files:
        files.add("/m/web-Q4_K_M.gguf", PULLED)
        files.add("/m/slow-Q4_K_M.gguf", PULLED)
        files.fault("/m/web-Q4_K_M.gguf", trickle=0.02, trickle_chunk=32 * 1024)
        files.fault("/m/slow-Q4_K_M.gguf", trickle=0.2, trickle_chunk=8 * 1024)
        page = web.open("#/models")
        page.fill("#pull-source", files.url("/m/web-Q4_K_M.gguf"))
        page.click("form[aria-labelledby=pull-title] button[type=submit]")
        bar = "[role=progressbar][aria-label='Download of web-q4_k_m']"
        page.wait_for_function(  # progress seen while it runs, not only at the end
            """bar => {
                const n = +document.querySelector(bar)?.getAttribute('aria-valuenow');
                return n > 0 && n < 100;
            }""",
            arg=bar,
        )
        page.wait_for_selector(
            "article.model-row[data-key=web-q4_k_m] .badge.ready", timeout=30_000
        )
        assert (home / "models" / "web-q4_k_m" / "web-Q4_K_M.gguf").read_bytes() == PULLED
        page.fill("#pull-source", files.url("/m/slow-Q4_K_M.gguf"))
        page.click("form[aria-labelledby=pull-title] button[type=submit]")
        page.click("[aria-label='Cancel the download of slow-q4_k_m']")
        page.wait_for_selector("article[aria-label='Download of slow-q4_k_m'] .badge.failed")
        assert "cancelled" in page.inner_text("article[aria-label='Download of slow-q4_k_m']")
        assert not (home / "models" / "slow-q4_k_m" / "slow-Q4_K_M.gguf").exists()


# ---- the API key, the look ------------------------------------------------------------------


def test_the_page_asks_for_the_api_key_once_and_keeps_it(browser: Any, tmp_path: Path) -> None:
    home = tmp_path / "keyed"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol")
    settings = load_settings(home=home, env={"HEARTH_API_KEY": KEY})
    with ThreadedServer(Services.create(settings)) as server:
        context = browser.new_context()
        web = Page(context.new_page(), server.url)
        page = web.page
        page.goto(server.url + "/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", "wrong-key-0123456789")
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#key-error:not([hidden])")
        page.fill("#key-input", KEY)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("html[data-ready=true]")
        page.wait_for_selector("#model-select option[value=smol]", state="attached")
        assert page.evaluate("localStorage.getItem('hearth.apiKey')") == KEY
        page.reload()
        page.wait_for_selector("html[data-ready=true]")
        assert not page.is_visible("#key-dialog")
        context.close()
        # the browser logs each refused request (401) as an error; nothing else may appear
        assert all("401" in e for e in web.errors), web.errors
        assert all(u.startswith(server.url) for u in web.requests)


def test_the_first_requests_and_the_saved_theme_do_not_wait_for_the_modules(
    browser: Any, srv: ThreadedServer
) -> None:
    """early.js alone (the modules refused here) asks for the first view's data, with the key
    the browser keeps, and applies the theme the user chose before anything is drawn."""
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    page.goto(srv.url + "/static/web/icon.svg")  # the origin, to set its storage
    page.evaluate("localStorage.setItem('hearth.theme', 'light')")
    page.evaluate("localStorage.setItem('hearth.apiKey', 'kept-key')")
    page.route("**/static/web/bundle/main.js", lambda route: route.abort())
    asked: dict[str, str | None] = {}
    page.on("request", lambda r: r.url.startswith(srv.url + "/v1/") and asked.update(
        {r.url.removeprefix(srv.url): r.headers.get("authorization")}
    ))
    page.goto(srv.url + "/")
    page.wait_for_function("() => document.readyState === 'complete'")
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("document.documentElement.dataset.ready") is None  # no module ran
    assert asked == {
        "/v1/models": "Bearer kept-key",
        "/v1/threads?limit=100": "Bearer kept-key",
    }
    context.close()


def test_a_page_left_open_across_an_upgrade_says_to_reload(
    browser: Any, srv: ThreadedServer
) -> None:
    """Chunks loaded on demand have content-hashed names: after an upgrade an open page asks
    for one that is gone. It says so instead of failing silently."""
    context = browser.new_context()
    page = Page(context.new_page(), srv.url).open()
    page.route("**/static/web/bundle/models-*", lambda route: route.fulfill(status=404))
    page.click("#models-link")
    toast = page.wait_for_selector(".toast.error")
    assert "Reload the page" in toast.inner_text()
    page.unroute("**/static/web/bundle/models-*")
    page.click("a[href='#/']")
    page.wait_for_selector("#chat-view:not([hidden])")
    context.close()


@pytest.mark.parametrize("width", [360, 1280])
def test_light_dark_and_narrow_screens(browser: Any, srv: ThreadedServer, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 760}, color_scheme="dark")
    web = Page(context.new_page(), srv.url)
    page = web.open()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if width <= 800:
        assert not page.is_visible("#new-chat")  # the sidebar is a drawer
        page.click("#chat-view .menu-button")
        page.wait_for_selector("#app.sidebar-open")
        assert page.evaluate("document.activeElement.id") == "thread-search"
        page.keyboard.press("Escape")  # closes the drawer, focus back on its button
        assert page.evaluate("document.activeElement.className").startswith("icon-button menu")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, "the page scrolls sideways"
    else:
        assert page.evaluate("document.activeElement.id") == "composer-input"
        page.click("#theme-toggle")
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != background
    context.close()
    web.check()


# ---- a conversation longer than its model's context ----------------------------------------


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """A model loaded with 512 tokens of context that is never grown (`grow_context` off)."""
    path = tmp_path_factory.mktemp("tight") / "home"
    (path / "models").mkdir(parents=True)
    (path / "settings.json").write_text(json.dumps({"grow_context": False}), encoding="utf-8")
    add_smol(path, "smol-tight", {"ctx_len": 512},
             model_parameters={"max_tokens": 4, "temperature": 0, "seed": 42})  # fmt: skip
    with ThreadedServer(Services.create(load_settings(home=path, env={}))) as server:
        yield server


def test_the_conversation_chooses_what_happens_when_it_outgrows_the_context(
    browser: Any, tight: ThreadedServer
) -> None:
    old = [("alpha " * 260, "A."), ("beta " * 260, "B.")]
    messages = [
        {"role": role, "content": text} for user, answer in old
        for role, text in (("user", user), ("assistant", answer))
    ]  # fmt: skip
    thread = api(tight, "POST", "/v1/threads", {"model": "smol-tight", "messages": messages})
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    web = Page(context.new_page(), tight.url)
    page = web.open(f"#/t/{thread['id']}")
    page.wait_for_selector(".message .bubble")
    page.click("#thread-settings")
    assert page.input_value("#set-overflow") == ""  # the server's setting until chosen
    page.select_option("#set-overflow", "drop-oldest")
    page.click("#settings-form button[value=save]")
    page.fill("#composer-input", "Say hi.")
    page.keyboard.press("Enter")
    note = page.wait_for_selector(".message.assistant .context-note", timeout=60_000)
    assert "2 earlier messages were left out" in note.inner_text()
    stored = httpx.get(f"{tight.url}/v1/threads/{thread['id']}").json()
    assert stored["metadata"]["context_overflow"] == "drop-oldest"
    page.click("#thread-settings")
    assert page.input_value("#set-overflow") == "drop-oldest"
    page.select_option("#set-overflow", "stop")
    page.click("#settings-form button[value=save]")
    page.wait_for_function("() => !document.getElementById('settings-dialog').open")
    page.fill("#composer-input", "And again.")
    page.keyboard.press("Enter")
    error = page.wait_for_selector(".message.assistant .error-box", timeout=60_000)
    assert "no longer fits" in error.inner_text() and '"stop"' in error.inner_text()
    stored = httpx.get(f"{tight.url}/v1/threads/{thread['id']}").json()
    assert stored["metadata"]["context_overflow"] == "stop"
    context.close()
    refused = [e for e in web.errors if "/runs" in e or "status of 400" in e]
    assert len(refused) == 2  # the refused run (its response, and the console saying so)
    web.errors = [e for e in web.errors if e not in refused]
    web.check()
