"""The web page in headless Chromium: load time, bytes on the wire, first token to paint.

Run by hand:  .venv/bin/python bench/bench_page.py [--loads 20] [--answers 20]

Hearth (the real app, SmolLM2-135M Q4_1) runs in this process under uvicorn on loopback,
wrapped in a tiny ASGI layer that notes the wall-clock time at which the first answer chunk of a
run (`POST /v1/threads/{id}/runs`) is handed to the server for sending. The page is the
system's Chromium, driven by Playwright; it marks `hearth:interactive` when the first view is
ready, `hearth:first-token` when the first content chunk comes out of its fetch reader, and
`hearth:first-paint` in a task queued from the first animation frame that shows the text
(that task runs once the frame is painted). Browser and server share one clock (performance.
timeOrigin + now() is wall-clock time, to 0.1 ms), so the figures are:

- load to interactive: navigation start -> `hearth:interactive` (modules fetched and run,
  /v1/models and /v1/threads answered, the first view drawn), cold (new browser context: empty
  cache) and warm (reload: vendor files cached, the page's own revalidated with 304s).
- bytes: the sum of Chromium's `encodedDataLength` (on the wire, headers included) for every
  response of a cold load (highlight.js included, though it loads after), and the same
  uncompressed. Counted in a load of its own: the DevTools events slow a page down.
- the floor: the same cold-load measurement for an empty page with one inline module, to show
  what a new context costs on the machine of the day.
- first token -> painted: server send of the first chunk -> paint, split into server -> fetch
  reader (network, HTTP parsing, stream reader) and reader -> paint (Markdown, sanitising, DOM,
  frame). The engine -> Hearth hop before it is measured by bench_proxy.py (TTFT added).

Goals (issue 12): load < 300 ms, < 500 KB compressed, first token painted p50 < 50 ms.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engines import add_smol

from hearth.config import load_settings
from hearth.server.app import create_app
from hearth.services import Services

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FIRST_SENT: list[float] = []  # wall-clock seconds: first answer chunk handed to the server


class FirstChunkClock:
    """ASGI wrapper: the time the first content chunk of each run is sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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


def cold_load(browser: Any, url: str) -> float:
    """One load with an empty cache (a new context): ms to interactive."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("html[data-ready=true]")
    value: float = page.evaluate("performance.getEntriesByName('hearth:interactive')[0].startTime")
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


def floor_load(browser: Any, url: str) -> float:
    """The same measurement for an empty page with one inline module (no files, no API): what
    a new browser context costs on this machine before any of Hearth's page is involved."""
    context = browser.new_context()
    page = context.new_page()
    html = "<!doctype html><title>x</title><script type=module>performance.mark('x')</script>"
    page.route(url + "/empty", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(url + "/empty")
    page.wait_for_function("() => performance.getEntriesByName('x').length > 0")
    value: float = page.evaluate("performance.getEntriesByName('x')[0].startTime")
    context.close()
    return value


def warm_loads(browser: Any, url: str, n: int) -> list[float]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("html[data-ready=true]")
    times = []
    for _ in range(n):
        page.reload()
        page.wait_for_selector("html[data-ready=true]")
        times.append(
            page.evaluate("performance.getEntriesByName('hearth:interactive')[0].startTime")
        )
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
        f"{name:34s} p50 {statistics.median(values):7.1f} {unit}   p90 {pct(values, 0.9):7.1f}"
        f" {unit}   min {min(values):7.1f}   max {max(values):7.1f}   (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--answers", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        (home / "models").mkdir(parents=True)
        add_smol(home, "smol", model_parameters={"max_tokens": 8})
        server, thread, url = serve(home)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            cold, floor = [], []
            for _ in range(args.loads):  # interleaved: both see the same machine load
                cold.append(cold_load(browser, url))
                floor.append(floor_load(browser, url))
            warm = warm_loads(browser, url, args.loads)
            wire, decoded = cold_bytes(browser, url)
            runs = answers(browser, url, args.answers)
            browser.close()
        server.should_exit = True
        thread.join(timeout=30)  # engines stopped before the home goes
    print(f"Chromium headless, loopback, {url}")
    report("load to interactive, cold", cold)
    report("load to interactive, warm", warm)
    report("empty page, cold (the floor)", floor)
    print(
        f"{'bytes on the wire, cold load':34s} {wire / 1000:.1f} KB "
        f"({decoded / 1000:.1f} KB uncompressed)"
    )
    report("first chunk: server -> reader", [r[0] for r in runs])
    report("first chunk: reader -> painted", [r[1] for r in runs])
    report("first chunk: server -> painted", [r[2] for r in runs])


if __name__ == "__main__":
    main()
