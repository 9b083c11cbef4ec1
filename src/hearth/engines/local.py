"""The local side of the engine seam: one request's replica of a leased local model.

A `LocalKind` opens its answers here (through the manager, which plans and leases): the lease
holds the model loaded, the replica set picked one process for this request, and the lean HTTP
client (`upstream.EngineClient`) carries the bytes with the process's per-launch key. Nothing
here is looked up per chunk: the key line was built once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from hearth.core.errors import EngineError
from hearth.engines.process import EngineProcess
from hearth.engines.proxy import Upstream
from hearth.engines.replicas import Replica, ReplicaSet
from hearth.engines.scheduler import Lease
from hearth.engines.upstream import EngineClient

HEADERS = {"content-type": "application/json"}


@dataclass
class LocalTarget:
    """One request's replica of a leased local model, and the client that reaches it."""

    lease: Lease[ReplicaSet]
    replica: Replica
    process: EngineProcess
    client: EngineClient

    async def send(self, path: str, content: bytes) -> Upstream:
        """POST to the replica's process; `path` is under the kind's OpenAI prefix, except
        llama.cpp's own routes ("/apply-template"), which start with "/"."""
        proc = self.process
        where = path if path.startswith("/") else f"{proc.kind.api_prefix}/{path}"
        try:
            response = await self.client.post(
                proc.host, int(proc.port or 0), where, content, HEADERS, proc.auth_head
            )
        except OSError as exc:
            raise await self.failure(exc) from None
        return Upstream(self, response, errors_in_openai_shape=False)

    def release(self) -> None:
        if not self.lease.released:
            self.lease.runner.release(self.replica)
        self.lease.release()

    async def failure(self, exc: Exception) -> EngineError:
        proc = self.process
        with contextlib.suppress(TimeoutError):  # a killed child is reaped within milliseconds
            await asyncio.wait_for(proc.wait_exit(), 1.0)
        if proc.crashed or proc.unexpected_exit:
            return self.lease.runner.failure(proc)
        if proc.returncode is not None:
            return EngineError(
                f"The engine for '{proc.alias}' was stopped (unloaded or deleted) during the "
                "request. Send it again to load the model anew."
            )
        return EngineError(
            f"Lost the connection to the engine for '{proc.alias}' ({type(exc).__name__}: "
            f"{exc}). Try again; if it persists, see {proc.log_path}."
        )
