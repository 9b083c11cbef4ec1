"""Memory under a soak: every face at once for a bounded time, and the server's memory curve.

Run by hand:  .venv/bin/python bench/bench_soak.py [--minutes 60] [--clients 4] [--every 15]

A real `hearth serve` child serves SmolLM2-135M (Q4_1). N client threads each loop over a
shuffled mix, all at temperature 0 with a few tokens so many requests go by: OpenAI chat
(`openai`, streamed and not), Anthropic messages streamed (`anthropic`), Ollama /api/chat
streamed (`ollama`), /v1/responses (streamed and not), thread runs (a new thread, a run, a
follow-up message and a second run; each client keeps its newest `--keep-threads` and deletes
the rest), /v1/models, /api/tags, and abandoned streams (the client closes after the first chunk).
Every `--every` seconds it samples the `hearth serve` process alone (RSS, open fds, threads)
and its engines apart; at the end it prints the curve, the slope over the second half
(least squares, MiB per minute) and the verdict.

`--tracemalloc` starts the server with PYTHONTRACEMALLOC and HEARTH_MEMDEBUG_DIR (see
src/hearth/server/memdebug.py): after the first quarter and at the end it sends SIGUSR1 and
prints what grew between the two, by traceback and by object type. Tracing slows the server
and adds its own memory, so its curve is not the one to report.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engines import add_smol
from support.server import HearthProcess

WORDS = ["river", "stone", "lamp", "garden", "winter", "bread", "candle", "window", "music",
         "paper", "cloud", "orange"]  # fmt: skip
MODEL = "smol"


def prompt(rng: random.Random) -> str:
    return "Say something about " + " and ".join(rng.sample(WORDS, 3)) + "."


class Client:
    """One soak client: its own connection pools, as a long-lived app would hold them."""

    def __init__(self, url: str, seed: int, tokens: int, keep_threads: int = 3) -> None:
        self.url, self.tokens, self.keep_threads = url, tokens, keep_threads
        self.rng = random.Random(seed)
        self.http = httpx.Client(base_url=url, timeout=300)
        self.oai = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
        self.ant = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=300)
        self.oll = ollama.Client(host=url, timeout=300)
        self.threads: list[str] = []

    def ops(self) -> dict[str, Callable[[], None]]:
        return {
            "openai": self.openai_chat,
            "openai-stream": self.openai_stream,
            "anthropic-stream": self.anthropic_stream,
            "ollama-stream": self.ollama_stream,
            "responses": self.responses,
            "thread-run": self.thread_run,
            "models": lambda: self.http.get("/v1/models").raise_for_status(),
            "tags": lambda: self.http.get("/api/tags").raise_for_status(),
            "abandoned": self.abandoned,
        }

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt(self.rng)}]

    def openai_chat(self) -> None:
        self.oai.chat.completions.create(
            model=MODEL, messages=self.messages(), max_tokens=self.tokens, temperature=0
        )

    def openai_stream(self) -> None:
        stream = self.oai.chat.completions.create(
            model=MODEL, messages=self.messages(), max_tokens=self.tokens, temperature=0,
            stream=True,
        )  # fmt: skip
        for _ in stream:
            pass

    def anthropic_stream(self) -> None:
        with self.ant.messages.stream(
            model=MODEL,
            messages=self.messages(),
            max_tokens=self.tokens,
            extra_body={"temperature": 0},  # the SDK has no sampling arguments any more
        ) as stream:
            for _ in stream.text_stream:
                pass

    def ollama_stream(self) -> None:
        options = {"temperature": 0, "num_predict": self.tokens}
        for _ in self.oll.chat(model=MODEL, messages=self.messages(), stream=True, options=options):
            pass

    def responses(self) -> None:
        stream = self.rng.random() < 0.5
        answer = self.oai.responses.create(
            model=MODEL, input=prompt(self.rng), max_output_tokens=self.tokens, temperature=0,
            stream=stream,
        )  # fmt: skip
        if stream:
            for _ in answer:
                pass

    def thread_run(self) -> None:
        params = {"temperature": 0, "max_tokens": self.tokens}
        body = {"title": "soak", "model": MODEL, "parameters": params, "messages": self.messages()}
        made = self.http.post("/v1/threads", json=body)
        made.raise_for_status()
        thread = made.json()["id"]
        self.threads.append(thread)
        self._run(thread)
        follow = {"role": "user", "content": prompt(self.rng)}
        self.http.post(f"/v1/threads/{thread}/messages", json=follow).raise_for_status()
        self._run(thread)
        self.http.get(f"/v1/threads/{thread}/messages").raise_for_status()
        self.http.get("/v1/threads", params={"limit": 20}).raise_for_status()
        while len(self.threads) > self.keep_threads:
            self.http.delete(f"/v1/threads/{self.threads.pop(0)}").raise_for_status()

    def _run(self, thread: str) -> None:
        with self.http.stream("POST", f"/v1/threads/{thread}/runs", json={}) as resp:
            resp.raise_for_status()
            for _ in resp.iter_lines():
                pass

    def abandoned(self) -> None:
        """Close after the first chunk of a long answer, on one of the three streaming faces."""
        path, body = self.rng.choice([
            ("/v1/chat/completions", {"model": MODEL, "messages": self.messages(), "stream": True,
                                      "max_tokens": 400, "temperature": 0}),
            ("/v1/messages", {"model": MODEL, "messages": self.messages(), "stream": True,
                              "max_tokens": 400, "temperature": 0}),
            ("/api/chat", {"model": MODEL, "messages": self.messages(), "stream": True,
                           "options": {"num_predict": 400, "temperature": 0}}),
        ])  # fmt: skip
        fresh = httpx.Client(base_url=self.url, timeout=300)  # its own connection
        with fresh, fresh.stream("POST", path, json=body) as resp:
            resp.raise_for_status()
            for _ in resp.iter_bytes():
                break

    def close(self) -> None:
        for thread in self.threads:
            self.http.delete(f"/v1/threads/{thread}")
        for closer in (self.http.close, self.oai.close, self.ant.close):
            closer()


def client_loop(client: Client, stop: threading.Event, done: Counter[str], errors: list[str],
                lock: threading.Lock) -> None:  # fmt: skip
    ops = client.ops()
    names = list(ops)
    while not stop.is_set():
        client.rng.shuffle(names)
        for name in names:
            if stop.is_set():
                break
            try:
                ops[name]()
            except Exception as exc:  # counted and shown, the soak goes on
                with lock:
                    errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                    done[f"{name} (error)"] += 1
                continue
            with lock:
                done[name] += 1


class Sample:
    def __init__(self, t: float, requests: int, proc: psutil.Process) -> None:
        self.t, self.requests = t, requests
        self.rss = proc.memory_info().rss / 2**20
        self.fds = proc.num_fds()
        self.threads = proc.num_threads()
        engines = proc.children(recursive=True)
        self.engines = sum(_rss(p) for p in engines) / 2**20
        self.n_engines = len(engines)


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


class LoggedProcess(HearthProcess):
    """HearthProcess whose output goes to a file: a pipe nobody reads would fill in an hour."""

    def start(self, wait: bool = True, timeout: float = 60) -> HearthProcess:
        self.log = open(self.home.parent / "server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=self.log)
        if wait:
            self.wait_healthy(timeout)
        return self


def probe(proc: psutil.Process, folder: Path, n: int) -> str:
    """SIGUSR1 the server and wait for its n-th dump (memdebug.py)."""
    proc.send_signal(signal.SIGUSR1)
    path = folder / f"dump-{n:03d}.txt"
    deadline = time.monotonic() + 300
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    return path.read_text(encoding="utf-8") if path.exists() else "(no dump)"


def run(args: argparse.Namespace, tmp: Path) -> None:
    home = tmp / "home"
    engine = {"ctx_len": 512 * args.clients, "n_parallel": args.clients, "cpu_threads": 2}
    add_smol(home, MODEL, engine, model_parameters={"keep_alive": -1})
    env: dict[str, str] = {}
    dumps = tmp / "memdebug"
    if args.tracemalloc:
        env = {"PYTHONTRACEMALLOC": "12", "HEARTH_MEMDEBUG_DIR": str(dumps)}
    server = LoggedProcess(home, "--no-starter", "--log-level", "warning", env=env)
    with server:
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        httpx.post(f"{server.url}/v1/models/{MODEL}/start", timeout=300).raise_for_status()
        stop, lock = threading.Event(), threading.Lock()
        done: Counter[str] = Counter()
        errors: list[str] = []
        clients = [Client(server.url, seed, args.tokens, args.keep_threads)
                   for seed in range(args.clients)]  # fmt: skip
        workers = [threading.Thread(target=client_loop, args=(c, stop, done, errors, lock))
                   for c in clients]  # fmt: skip
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        samples = [Sample(0, 0, proc)]
        for worker in workers:
            worker.start()
        print("| min | requests | server RSS MiB | fds | threads | engines RSS MiB |", flush=True)
        print("|---|---|---|---|---|---|", flush=True)
        base_dump = ""
        try:
            while time.monotonic() < end:
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
                with lock:
                    total = sum(done.values())
                s = Sample(time.monotonic() - t0, total, proc)
                samples.append(s)
                print(f"| {s.t / 60:.1f} | {s.requests} | {s.rss:.1f} | {s.fds} | {s.threads} "
                      f"| {s.engines:.0f} ({s.n_engines}) |", flush=True)  # fmt: skip
                if args.tracemalloc and not base_dump and s.t >= args.minutes * 15:
                    base_dump = probe(proc, dumps, 1)
        finally:
            stop.set()
            for worker in workers:
                worker.join()
            last_dump = probe(proc, dumps, 2) if args.tracemalloc and base_dump else ""
            for client in clients:
                client.close()
    server.log.close()
    report(args, samples, done, errors, last_dump)


def report(args: argparse.Namespace, samples: list[Sample], done: Counter[str],
           errors: list[str], dump: str) -> None:  # fmt: skip
    half = [(s.t / 60, s.rss) for s in samples if s.t >= samples[-1].t / 2]
    rate = slope(half) if len(half) >= 2 else 0.0
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    print()
    print(f"requests: {sum(done.values())} in {last.t / 60:.1f} min; " +
          ", ".join(f"{k} {v}" for k, v in sorted(done.items())))  # fmt: skip
    for line in errors[:10]:
        print("  error:", line)
    print(f"server RSS {samples[0].rss:.1f} -> {first.rss:.1f} (first sample) -> {last.rss:.1f} "
          f"MiB; fds {samples[0].fds} -> {last.fds}; threads {samples[0].threads} -> "
          f"{last.threads}")  # fmt: skip
    verdict = "flat" if rate <= args.flat else "GROWING"
    print(f"slope over the second half: {rate:+.3f} MiB/min ({verdict}; flat means <= "
          f"{args.flat} MiB/min)")  # fmt: skip
    if dump:
        print("\n" + dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60, help="how long the load runs")
    parser.add_argument("--clients", type=int, default=4, help="client threads (engine slots)")
    parser.add_argument("--every", type=float, default=15, help="seconds between samples")
    parser.add_argument("--tokens", type=int, default=16, help="max tokens per answer")
    parser.add_argument("--keep-threads", type=int, default=3,
                        help="threads each client keeps (older ones are deleted)")  # fmt: skip
    parser.add_argument("--flat", type=float, default=0.1, help="MiB/min still called flat")
    skews = "dump the server's growth by traceback (slower; skews the curve)"
    parser.add_argument("--tracemalloc", action="store_true", help=skews)
    args = parser.parse_args()
    # `kill` (SIGTERM) unwinds like Ctrl-C: the server and its engines are stopped, no orphans
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
