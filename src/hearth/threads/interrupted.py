"""Answers whose writer is gone: a run's `pending` message that no live run will ever finish.

A run appends its answer as `pending` and rewrites it as it grows; only the run's final save
makes it `ready`, `stopped` or `error`. When the server dies first (kill -9, a crash, power
loss) the message would stay `pending` forever, and the page would show it as still being
written. Such an answer becomes `error` (code `interrupted`), keeping every word that was saved:

- `error`, not `stopped`: the user did not stop it, and the page shows why beside the text; a
  failed answer is also left out of the next run's conversation, as a half sentence should be.
- At start, every pending answer of the home is one (the home lock means one server per home,
  and this one has not started any run yet) unless a run of this process has begun meanwhile.
- When a thread is read, a pending answer that a Hearth run marked with its process token is one
  unless it is a run of this process still writing. An unmarked pending answer (another tool's,
  perhaps writing right now) is left for the start-up sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from hearth.threads.edits import now_ms

#: The metadata key a run's pending answer carries: which process writes it.
WRITER_KEY = "hearth_writer"
#: This process. A token, not a pid: pids are reused, and a home may move between machines.
WRITER = uuid.uuid4().hex
#: Ids of the answers this process's runs are writing now (one set per process, as WRITER is:
#: two services of one home in one process, as tests make, see each other's runs).
LIVE: set[str] = set()
CODE = "interrupted"
MESSAGE = (
    "Hearth stopped (it was killed or crashed) before this answer was finished; the text it "
    "had written is kept. Regenerate the answer for a whole one."
)


def writer_mark() -> dict[str, str]:
    """The metadata a run's pending answer starts with."""
    return {WRITER_KEY: WRITER}


def without_mark(metadata: Any) -> dict[str, Any]:
    """The message's metadata minus the writer mark (a finished answer has no writer)."""
    kept = metadata if isinstance(metadata, dict) else {}
    return {k: v for k, v in kept.items() if k != WRITER_KEY}


def is_orphan(
    raw: dict[str, Any], message_id: str, live: Collection[str], *, unmarked: bool
) -> bool:
    """Is this a pending answer nobody will finish? `live`: ids this process is writing;
    `unmarked`: also count pending answers no Hearth run marked (only safe at start)."""
    if raw.get("status") != "pending" or raw.get("role") != "assistant" or message_id in live:
        return False
    metadata = raw.get("metadata")
    marked = isinstance(metadata, dict) and WRITER_KEY in metadata
    return marked or unmarked


def mark_interrupted(raw: dict[str, Any]) -> None:
    """Turn an orphaned pending answer into an `error` one, its saved text untouched."""
    raw.update(status="error", error_code=CODE, error=MESSAGE)
    if not raw.get("completed_at"):
        raw["completed_at"] = now_ms()
    raw["metadata"] = without_mark(raw.get("metadata"))
