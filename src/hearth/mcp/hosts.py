"""Running the configured MCP servers: one owner task each (issue 26, points 1 and 4).

Why an owner task: the SDK's transports and sessions hold anyio cancel scopes that must be left
in the task that entered them (docs/research/mcp.md §1.6). So each server's `Client` is opened and
closed by one long-lived task; calls from any request task go through the open session, which
the SDK allows. A server starts on first use, a crashed one is restarted on the next use after an
exponential backoff (Jan's `mcpSettings`), and `aclose` stops every server. The SDK kills a
server's process group only when the leader outlives stdin's close; a leader that exits at once
can leave children behind, so every child carries a marker in its environment and the stop
sweeps any process still wearing it (no orphans). One broken server never touches another.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import psutil
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, CallToolResult, Tool

from hearth.mcp.config import McpConfig, McpSettings, ServerConfig
from hearth.mcp.redact import RedactingFilter, Redactor
from hearth.mcp.results import result_text

log = logging.getLogger("hearth.mcp")

#: How long a server may take to start and answer the handshake and the tool list.
CONNECT_TIMEOUT = 20.0
#: The most characters of one tool result handed on (a model's context is the real bound).
RESULT_CAP = 100_000
STDERR_LINES = 50
STDERR_LINE_CHARS = 500
MARKER = "HEARTH_MCP_SERVER"


class McpUnavailable(Exception):
    """The server is unknown, inactive, cannot start, or is waiting out its restart delay."""


class McpCallError(Exception):
    """A protocol-level failure of one call (timeout -32001, connection closed -32000, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CallOutcome:
    """One tool call's result as text for a model, cut to the cap (and saying so)."""

    server: str
    tool: str
    text: str
    is_error: bool
    cut: bool
    full_chars: int
    result: CallToolResult | None = None  # None when cut: the whole result is not kept
    code: int | None = None  # a protocol failure's JSON-RPC code (no result came)


@dataclass
class ServerStatus:
    name: str
    state: str  # "stopped" | "starting" | "running" | "failed" | "inactive"
    transport: str
    last_error: str | None = None
    restarts: int = 0
    tools: list[Tool] | None = None
    stderr_tail: list[str] = field(default_factory=list)


def leaf_error(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    leaf = leaf_error(exc)
    return f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__


class StderrTail:
    """A pipe for a child's stderr, drained by a thread into a bounded ring of lines."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        threading.Thread(target=self._drain, args=(read_fd,), daemon=True).start()

    def _drain(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as reader:
            for raw in iter(lambda: reader.readline(64 * 1024), b""):
                text = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(text[:STDERR_LINE_CHARS])

    def close_writer(self) -> None:
        """The child holds its own copy; ours must close or the drain never sees the end."""
        if not self.writer.closed:
            self.writer.close()


def _sweep(token: str) -> int:
    """SIGKILL every process still carrying this server's marker, and wait (bounded) until
    they are gone, so a stop that returned means no process is left; how many there were."""
    killed = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == token:
                proc.kill()
                killed.append(proc)
        except (psutil.Error, OSError):
            continue
    if killed:
        log.warning("mcp: killed %d process(es) a server left behind", len(killed))
        psutil.wait_procs(killed, timeout=5)
    return len(killed)


@asynccontextmanager
async def _streamable_http(url: str, headers: dict[str, str], timeout: float) -> AsyncIterator[Any]:
    """The streamable HTTP transport with the config's headers, its HTTP client closed after."""
    http = httpx2.AsyncClient(headers=dict(headers), timeout=timeout)
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


class _QuietParseErrors(logging.Filter):
    """The SDK logs each non-JSON stdout line of a server at ERROR with a traceback
    (docs/research/mcp.md §1.7): a server flooding stdout would flood Hearth's log. Keep the
    first few per minute, without the traceback."""

    def __init__(self, per_minute: int = 5) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.window = 0.0
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.window > 60:
            self.window, self.count = now, 0
        self.count += 1
        record.exc_info = None
        record.exc_text = None
        return self.count <= self.per_minute


def quiet_sdk_logs() -> None:
    """Install the filter once on the SDK's stdio logger. httpx2 (the SDK's HTTP client) logs
    every request's whole URL at INFO, and a remote server's URL may carry its key: WARNING
    and above only, as Hearth does for httpx (unless someone chose its level), and the HTTP
    loggers' records cleaned of the servers' secrets at any level."""
    sdk = logging.getLogger("mcp.client.stdio")
    if not any(isinstance(item, _QuietParseErrors) for item in sdk.filters):
        sdk.addFilter(_QuietParseErrors())
    http = logging.getLogger("httpx2")
    if http.level == logging.NOTSET:
        http.setLevel(logging.WARNING)
    for name in ("httpx2", "mcp.client.streamable_http", "mcp.client.sse"):
        logger = logging.getLogger(name)
        if not any(isinstance(item, RedactingFilter) for item in logger.filters):
            logger.addFilter(RedactingFilter())


class ServerHost:
    """One configured server: its owner task, its session, its status."""

    def __init__(self, config: ServerConfig, settings: McpSettings, result_cap: int) -> None:
        self.config = config
        self.settings = settings
        self.result_cap = result_cap
        self.connect_timeout = CONNECT_TIMEOUT
        self.redactor = Redactor(config)
        self._retired = asyncio.Event()  # stopped for good: this host never starts again
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tools: list[Tool] | None = None
        self._stderr: StderrTail | None = None
        self._token = ""
        self._failures = 0
        self._retry_at = 0.0
        self.last_error: str | None = None
        self.restarts = 0
        self.starts = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def call_timeout(self) -> float:
        return self.config.call_timeout or self.settings.call_timeout

    @property
    def retired(self) -> bool:
        """Stopped (its entry was removed or changed, or Hearth is stopping): a request still
        holding this host must not start the old entry's program, which nothing would stop."""
        return self._retired.is_set()

    def _stderr_tail(self) -> list[str]:
        return [self.redactor.clean(line) for line in self._stderr.lines] if self._stderr else []

    def status(self) -> ServerStatus:
        if not self.config.active:
            state = "inactive"
        elif self._client is not None:
            state = "running"
        elif self._task is not None and self._ready is not None and not self._ready.done():
            state = "starting"
        else:
            state = "failed" if self.last_error else "stopped"
        return ServerStatus(
            self.name, state, self.config.transport, self.last_error, self.restarts,
            self._tools, self._stderr_tail(),
        )  # fmt: skip

    def backing_off(self) -> bool:
        """Failed and still inside its restart delay: a status listing shows it as failed
        rather than wait the delay out (up to `max_restart_delay`) before answering."""
        return self._client is None and bool(self.last_error) and time.monotonic() < self._retry_at

    def _transport(self) -> AbstractAsyncContextManager[Any]:
        config = self.config
        if config.transport == "stdio":
            self._stderr = StderrTail()
            self._token = secrets.token_hex(8)
            params = StdioServerParameters(
                command=config.command, args=list(config.args), cwd=config.cwd,
                env={**config.env, MARKER: self._token}, encoding_error_handler="replace",
            )  # fmt: skip
            return stdio_client(params, errlog=self._stderr.writer)
        if config.transport == "sse":
            return sse_client(config.url, headers=dict(config.headers))
        return _streamable_http(config.url, config.headers, self.call_timeout)

    async def _owner(self, ready: asyncio.Future[None]) -> None:
        """The only task that enters and leaves this server's `Client` (same task, LIFO)."""
        if self.retired:  # stopped between its start and its first step: start nothing
            ready.set_exception(McpUnavailable(self._unavailable()))
            return
        try:
            deadline = anyio.current_time() + self.connect_timeout
            with anyio.CancelScope(deadline=deadline) as scope:
                async with Client(
                    self._transport(), read_timeout_seconds=self.call_timeout, mode="legacy"
                ) as client:
                    if self._stderr:
                        self._stderr.close_writer()
                    self._tools = list((await client.list_tools()).tools)
                    scope.deadline = math.inf  # connected: lift the connect deadline
                    self._client = client
                    ready.set_result(None)
                    try:
                        await self._stop.wait()
                    finally:
                        self._client = None
            if scope.cancelled_caught and not ready.done():
                raise TimeoutError(f"no answer to the handshake within {self.connect_timeout:g} s")
        except BaseException as exc:  # the SDK raises nested exception groups
            self._failed(describe(exc))
            if not ready.done():
                ready.set_exception(McpUnavailable(self._unavailable()))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if self._stderr:
                self._stderr.close_writer()
            if self._token:
                await asyncio.to_thread(_sweep, self._token)

    def _failed(self, error: str) -> None:
        """Record the error (its secrets out) and push the next start back: base ×
        multiplier^n, capped."""
        error = self.last_error = self.redactor.clean(error)
        settings = self.settings
        delay = settings.base_restart_delay * settings.backoff_multiplier**self._failures
        self._failures += 1
        self._retry_at = time.monotonic() + min(delay, self.settings.max_restart_delay)
        log.warning("mcp server %s failed: %s", self.name, error)

    def _unavailable(self) -> str:
        if self.retired:
            return (
                f"MCP server {self.name!r} was removed or changed in the MCP configuration, or "
                "Hearth is stopping: this request cannot start it; send the request again"
            )
        tail = "; stderr: " + " | ".join(self._stderr_tail()[-3:]) if self._stderr else ""
        return f"MCP server {self.name!r} is not available: {self.last_error}{tail}"

    async def _backoff(self) -> None:
        """Wait out the restart delay (bounded by the call timeout), or less if the host is
        stopped meanwhile: then it must not start (`_unavailable` says why)."""
        wait = self._retry_at - time.monotonic()
        if wait > self.call_timeout:
            raise McpUnavailable(self._unavailable() + f"; next try in {wait:.0f} s")
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retired.wait(), wait)
        if self.retired:
            raise McpUnavailable(self._unavailable())

    def check_on(self) -> None:
        """`McpUnavailable` if the user turned the server off."""
        if not self.config.active:
            raise McpUnavailable(f"MCP server {self.name!r} is turned off (`active: false`)")

    async def ensure_started(self) -> Client:
        """The open session, starting (or restarting after the backoff) the server if needed."""
        self.check_on()
        async with self._lock:
            task, ready = self._task, self._ready
            if task is not None and ready is not None and ready.done() and self._client is None:
                await asyncio.gather(asyncio.shield(task), return_exceptions=True)  # leaving
            if self._task is None or self._task.done():
                if self.retired:
                    raise McpUnavailable(self._unavailable())
                await self._backoff()  # no await between its last check and the start below
                if self.starts:
                    self.restarts += 1
                self.starts += 1
                self._stop = asyncio.Event()
                self._ready = asyncio.get_running_loop().create_future()
                self._task = asyncio.create_task(self._owner(self._ready), name=f"mcp:{self.name}")
            ready = self._ready
        assert ready is not None
        await asyncio.shield(ready)
        client = self._client
        if client is None:
            raise McpUnavailable(self._unavailable())
        return client

    async def list_tools(self) -> list[Tool]:
        await self.ensure_started()
        return list(self._tools or [])

    async def call(
        self, tool: str, arguments: dict[str, Any] | None = None, *, request: str = ""
    ) -> CallOutcome:
        """One call, bounded by the server's call timeout; the result cut to the cap."""
        client = await self.ensure_started()
        started = time.monotonic()
        where = f" for {request}" if request else ""
        try:
            result = await client.call_tool(
                tool, arguments or {}, read_timeout_seconds=self.call_timeout
            )
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._failed(f"connection closed during {tool!r}")
                self._client = None  # no other call may pick up the dead session
                self._stop.set()  # the owner leaves; the next use restarts after the backoff
            said = self.redactor.clean(str(exc))
            log.warning("mcp %s.%s%s failed: %s", self.name, tool, where, said)
            message = f"MCP server {self.name!r}, tool {tool!r}: {said}"
            raise McpCallError(exc.code, message) from exc
        self._failures = 0
        text, full = result_text(result, self.result_cap)
        log.info(
            "mcp %s.%s%s: %s in %.2f s, %d characters%s", self.name, tool, where,
            "error" if result.is_error else "ok", time.monotonic() - started, full,
            " (cut)" if full > self.result_cap else "",
        )  # fmt: skip
        cut = full > self.result_cap
        return CallOutcome(
            self.name, tool, text, result.is_error, cut, full, None if cut else result
        )

    async def stop(self) -> None:
        """Retire the host (it never starts again, even for a request already waiting on it)
        and leave the session in its owner task; the SDK and the sweep end the processes."""
        self._retired.set()
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.connect_timeout)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class McpHosts:
    """Every configured server by name; the only way the rest of Hearth reaches one."""

    def __init__(
        self,
        config: McpConfig,
        *,
        result_cap: int = RESULT_CAP,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        quiet_sdk_logs()
        self.config = config
        self._hosts = {
            name: ServerHost(server, config.settings, result_cap)
            for name, server in config.servers.items()
        }
        for host in self._hosts.values():
            host.connect_timeout = connect_timeout

    def adopt(self, old: McpHosts) -> list[ServerHost]:
        """Keep `old`'s running hosts whose entries are unchanged (a config re-read must not
        restart them); the rest of `old`'s hosts are returned, for the caller to stop."""
        left: list[ServerHost] = []
        same_settings = old.config.settings == self.config.settings
        for name, host in old._hosts.items():
            mine = self._hosts.get(name)
            if same_settings and mine is not None and mine.config == host.config:
                self._hosts[name] = host
            else:
                left.append(host)
        return left

    def __iter__(self) -> Iterator[ServerHost]:
        return iter(self._hosts.values())

    def host(self, name: str) -> ServerHost:
        """The named server; `McpUnavailable` naming the configured ones if there is none."""
        try:
            return self._hosts[name]
        except KeyError:
            known = ", ".join(sorted(self._hosts)) or "none"
            raise McpUnavailable(
                f"no MCP server named {name!r} is configured (configured: {known}); "
                "servers come only from the user's mcp.json (or Jan's mcp_config.json)"
            ) from None

    def statuses(self) -> list[ServerStatus]:
        return [host.status() for host in self._hosts.values()]

    async def list_tools(self, server: str) -> list[Tool]:
        return await self.host(server).list_tools()

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, *, request: str = ""
    ) -> CallOutcome:
        return await self.host(server).call(tool, arguments, request=request)

    async def aclose(self) -> None:
        """Stop every server at once (each bounded), for the app's shutdown."""
        await asyncio.gather(*(host.stop() for host in self._hosts.values()))
