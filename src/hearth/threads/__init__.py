"""Conversations as files, in Jan's layout: `<home>/threads/<id>/thread.json` + `messages.jsonl`.

Never imports `server/` or `cli/`: the service layer (`hearth.services.threads`) is the one
caller. `store` reads and writes folders; `views` shows Jan's variants as one shape; `edits`
checks and applies requests; `answer` builds a run's chat request and gathers its answer;
`exchange` exports and imports a thread as one file.
"""

from hearth.threads.store import StoredThread, ThreadStore

__all__ = ["StoredThread", "ThreadStore"]
