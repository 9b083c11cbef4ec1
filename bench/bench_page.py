"""The web page in headless Chromium: load time, bytes on the wire, first token to paint.

Run by hand:  .venv/bin/python bench/bench_page.py [--loads 20] [--answers 20]
Compare:      .venv/bin/python bench/bench_page.py --loads 25 --against <other tree>/src
              (cold loads of both pages, interleaved: e.g. `git worktree add /tmp/old HEAD~1`)

Hearth (the real app, SmolLM2-135M Q4_1) runs in this process under uvicorn on loopback,
wrapped in a tiny ASGI layer that notes the wall-clock time at which the first answer chunk of a
run (`POST /v1/threads/{id}/runs`) is handed to the server for sending. The page is the
system's Chromium, driven by Playwright; it marks `hearth:interactive` when the first view is
ready, `hearth:first-token` when the first content chunk comes out of its fetch reader, and
`hearth:first-paint` in a task queued from the first animation frame that shows the text
(that task runs once the frame is painted). Browser and server share one clock (performance.
timeOrigin + now() is wall-clock time, to 0.1 ms), so the figures are:

- load to interactive: navigation start -> `hearth:interactive` (modules fetched and run,
  /v1/models and /v1/threads answered, the first view drawn), three ways:
  - cold, new tab: a new tab of a running browser with its HTTP cache emptied (DevTools), as a
    user meets the page the first time; the tab gets a renderer process of its own;
  - cold, window: a new browser context (empty cache) and so a new window, whose own chrome
    (the address bar's WebUI pages, a renderer of their own) loads on the same two cores at
    the same time: the worst case, with the browser's work in it;
  - warm: reloads of one tab (vendor files cached, the page's own revalidated with 304s).
  The bench waits for the mark through the DevTools protocol with a 5 ms timer, not with
  Playwright's selectors, which run Playwright's own large script on the page's main thread.
- bytes: the sum of Chromium's `encodedDataLength` (on the wire, headers included) for every
  response of a cold load (highlight.js included, though it loads after), and the same
  uncompressed. Counted in a load of its own: the DevTools events slow a page down.
- the floor: the same two cold measurements for an empty page with one inline module (served
  by the bench's wrapper, not by Hearth), to show what the browser costs on the machine of the
  day before any of Hearth's page is involved.
- first token -> painted: server send of the first chunk -> paint, split into server -> fetch
  reader (network, HTTP parsing, stream reader) and reader -> paint (Markdown, sanitising, DOM,
  frame). The engine -> Hearth hop before it is measured by bench_proxy.py (TTFT added).

Goals (issue 12): load < 300 ms, < 500 KB compressed, first token painted p50 < 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.chromium import ARGS, CHROMIUM
from support.engines import add_smol

from hearth.core.config import load_settings
from hearth.server.app import create_app
from hearth.services import Services

FIRST_SENT: list[float] = []  # wall-clock seconds: first answer chunk handed to the server
INTERACTIVE = "hearth:interactive"
FLOOR_PATH = "/bench/empty"  # the floor: an empty page with one inline module, served here
FLOOR_PAGE = (
    "<!doctype html><title>x</title><script type=module>"
    f"performance.mark('{INTERACTIVE}'); document.documentElement.dataset.ready = 'true'"
    "</script>"
).encode()


class FirstChunkClock:
    """ASGI wrapper: the time the first content chunk of each run is sent; the floor's page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == FLOOR_PATH:
            headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": FLOOR_PAGE})
            return
        if scope["type"] != "http" or not scope["path"].endswith("/runs"):
            await self.app(scope, receive, send)
            return
        seen = False

        async def timed(message: Any) -> None:
            nonlocal seen
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if not seen and b'"content":"' in body:
                seen = True
                FIRST_SENT.append(time.time())
            await send(message)

        await self.app(scope, receive, timed)


def serve(home: Path) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = FirstChunkClock(create_app(Services.create(load_settings(home=home, env={}))))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def mark(page: Any, name: str) -> float | None:
    """A performance mark as wall-clock milliseconds, or None if it was not set."""
    return page.evaluate(
        """name => {
            const m = performance.getEntriesByName(name)[0];
            return m ? performance.timeOrigin + m.startTime : null;
        }""",
        name,
    )


# Waits for a mark from outside the page's own code: a timer that only reads an attribute. Not
# Playwright's selectors: their first use evaluates Playwright's injected script (about 200 KB)
# on the page's main thread, which delayed the very page being measured by 20-30 ms.
READY = """new Promise((resolve) => {
  const timer = setInterval(() => {
    const mark = performance.getEntriesByName(%r)[0];
    if (!mark || document.documentElement?.dataset.ready !== "true") return;
    clearInterval(timer);
    resolve(mark.startTime);
  }, 5);
})"""


def load_time(page: Any, cdp: Any, url: str, mark_name: str) -> float:
    """Navigate and return the mark's time (ms since navigation start), waited for through the
    DevTools protocol once the new document is committed."""
    page.goto(url, wait_until="commit")
    answer = cdp.send(
        "Runtime.evaluate",
        {"expression": READY % mark_name, "awaitPromise": True, "returnByValue": True},
    )
    if "exceptionDetails" in answer:
        raise RuntimeError(answer["exceptionDetails"].get("text", answer))
    return float(answer["result"]["value"])


def tab_load(context: Any, anchor: Any, url: str, mark_name: str = INTERACTIVE) -> float:
    """A cold load in a new tab of a running browser, as a user opening the page meets it: the
    HTTP cache emptied first (DevTools), a new tab (a new renderer process) for the page."""
    anchor.send("Network.clearBrowserCache")
    page = context.new_page()
    value = load_time(page, context.new_cdp_session(page), url, mark_name)
    page.close()
    return value


def window_load(browser: Any, url: str, mark_name: str = INTERACTIVE) -> float:
    """A cold load in a new browser context: empty cache, and a new window, whose own browser
    chrome (the address bar's WebUI pages) loads at the same time on the same two cores."""
    context = browser.new_context()
    page = context.new_page()
    value = load_time(page, context.new_cdp_session(page), url, mark_name)
    context.close()
    return value


def cold_bytes(browser: Any, url: str) -> tuple[int, int]:
    """Bytes of one cold load, counted through the DevTools protocol (in a load of its own: the
    protocol's events slow the page down): (on the wire, decoded)."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    wire: list[int] = []
    cdp.on("Network.loadingFinished", lambda e: wire.append(int(e["encodedDataLength"])))
    sizes: list[int] = []  # decoded body bytes, as they arrive
    cdp.on("Network.dataReceived", lambda e: sizes.append(int(e["dataLength"])))
    page.goto(url + "/")
    page.wait_for_selector("html[data-ready=true]")
    page.wait_for_timeout(500)  # highlight.js loads once the page is idle: count it too
    context.close()
    return sum(wire), sum(sizes)


def warm_loads(browser: Any, url: str, n: int) -> list[float]:
    """Reloads of one tab: vendor files from the cache, the page's own revalidated (304s)."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    load_time(page, cdp, url + "/", INTERACTIVE)
    times = [load_time(page, cdp, url + "/", INTERACTIVE) for _ in range(n)]
    context.close()
    return times


def answers(browser: Any, url: str, n: int) -> list[tuple[float, float, float]]:
    """(server -> reader, reader -> paint, server -> paint) in ms, for n short answers."""
    context = browser.new_context()
    page = context.new_page()
    out = []
    for i in range(n):
        page.goto(url + "/#/")
        page.wait_for_selector("html[data-ready=true]")
        page.evaluate("performance.clearMarks()")  # a hash change keeps the document
        before = len(FIRST_SENT)
        page.fill("#composer-input", f"Say one word about the number {i}.")
        page.keyboard.press("Enter")
        page.wait_for_selector(".message.assistant .meta .figures", timeout=120_000)
        token, painted = mark(page, "hearth:first-token"), mark(page, "hearth:first-paint")
        if token is None or painted is None or len(FIRST_SENT) == before:
            continue
        sent = FIRST_SENT[-1] * 1000
        out.append((token - sent, painted - token, painted - sent))
    context.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float], unit: str = "ms") -> None:
    print(
        f"{name:36s} p50 {statistics.median(values):7.1f} {unit}   p90 {pct(values, 0.9):7.1f}"
        f" {unit}   min {min(values):7.1f}   max {max(values):7.1f}   (n={len(values)})"
    )


def a_home(folder: Path) -> Path:
    home = folder / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol", model_parameters={"max_tokens": 8})
    return home


def serve_only(folder: Path) -> None:
    """`--serve-only`: Hearth (whichever `hearth` PYTHONPATH finds) on a free port, its URL on
    stdout, until killed: the other side of `--against`."""
    _server, thread, url = serve(a_home(folder))
    print(url, flush=True)
    thread.join()


def compare(browser: Any, url: str, other: str, loads: int) -> None:
    """Cold loads of this tree's page and another's, interleaved (alternating which goes
    first), so both see the same machine: the paired difference is the figure to trust."""
    context = browser.new_context()
    anchor = context.new_cdp_session(context.new_page())
    ways = {
        "new tab": lambda u: tab_load(context, anchor, u + "/"),
        "window": lambda u: window_load(browser, u + "/"),
    }
    for name, load in ways.items():
        load(url), load(other)  # each server's files read and compressed once
        this, that = [], []
        for i in range(loads):
            for side, times in ((url, this), (other, that))[:: 1 if i % 2 else -1]:
                times.append(load(side))
        deltas = [a - b for a, b in zip(this, that, strict=True)]
        report(f"cold, {name}: this tree", this)
        report(f"cold, {name}: --against", that)
        faster = sum(d < 0 for d in deltas)
        print(
            f"{'  paired, this minus --against':36s} median {statistics.median(deltas):+7.1f} ms"
            f"   (this faster in {faster} of {loads})"
        )
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument(
        "--against", metavar="SRC", help="also serve the page of another source tree (its "
        "src/ folder, e.g. a git worktree of an older commit) and compare cold loads, paired"
    )  # fmt: skip
    parser.add_argument("--serve-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_only:
        serve_only(Path(args.serve_only))
        return
    from playwright.sync_api import sync_playwright

    if args.against:  # both pages served by processes of their own, alike
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            urls = []
            for side, path in (("this", None), ("other", args.against)):
                env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
                command = [sys.executable, __file__, "--serve-only", f"{tmp}/{side}"]
                process = stack.enter_context(
                    subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
                )
                stack.callback(process.terminate)
                assert process.stdout is not None
                urls.append(process.stdout.readline().strip())
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                compare(browser, urls[0], urls[1], args.loads)
                browser.close()
        return

    with tempfile.TemporaryDirectory() as tmp:
        server, thread, url = serve(a_home(Path(tmp)))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context()  # the running browser's tabs
            anchor = context.new_cdp_session(context.new_page())
            tab, tab_floor, window, window_floor = [], [], [], []
            for _ in range(args.loads):  # interleaved: all see the same machine load
                tab.append(tab_load(context, anchor, url + "/"))
                tab_floor.append(tab_load(context, anchor, url + FLOOR_PATH))
                window.append(window_load(browser, url + "/"))
                window_floor.append(window_load(browser, url + FLOOR_PATH))
            context.close()
            warm = warm_loads(browser, url, args.loads)
            wire, decoded = cold_bytes(browser, url)
            runs = answers(browser, url, args.answers)
            browser.close()
        server.should_exit = True
        thread.join(timeout=30)  # engines stopped before the home goes
    print(f"Chromium headless, loopback, {url}")
    report("load to interactive, cold, new tab", tab)
    report("  empty page, same way (the floor)", tab_floor)
    report("load to interactive, cold, window", window)
    report("  empty page, same way (the floor)", window_floor)
    report("load to interactive, warm (reload)", warm)
    print(
        f"{'bytes on the wire, cold load':36s} {wire / 1000:.1f} KB "
        f"({decoded / 1000:.1f} KB uncompressed)"
    )
    report("first chunk: server -> reader", [r[0] for r in runs])
    report("first chunk: reader -> painted", [r[1] for r in runs])
    report("first chunk: server -> painted", [r[2] for r in runs])


if __name__ == "__main__":
    main()
