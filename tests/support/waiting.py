"""Polling helper for end-to-end tests: wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Return the first truthy value of `predicate()`, polling every 50 ms until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_done(url: str, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll GET /v1/downloads/{job} on the server at `url` until the job has ended."""
    import httpx

    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{url}/v1/downloads/{job_id}", timeout=10).json()
        return body if body["state"] in ("completed", "failed", "cancelled") else None

    return wait_for(ended, timeout, what=f"job {job_id}")
