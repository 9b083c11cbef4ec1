"""Conversations: what the Threads/Messages API (and the web page) may do to `<home>/threads`.

Thin over the store (`hearth.threads`): it turns stored objects into the API's (Jan's variants
normalised), pages and searches lists, and starts runs (`thread_runs.py`), so routes only
translate HTTP. Methods are synchronous file work except runs; the HTTP face calls them from
its thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from hearth.core.errors import Conflict, InvalidRequest, NotFound
from hearth.threads import edits, exchange, interrupted, jsonl
from hearth.threads.ids import validate_message_id
from hearth.threads.store import Message, StoredThread, ThreadStore, message_not_found
from hearth.threads.views import message_text, message_view, thread_view

log = logging.getLogger("hearth.threads")


def encode_json(value: Any) -> bytes:
    """A thread or message as strict JSON for the face: whatever a file on disk holds (NaN, a
    lone surrogate), a browser can parse the answer."""
    return jsonl.encode(value)


if TYPE_CHECKING:
    from hearth.engines.proxy import Answer
    from hearth.services.thread_runs import Run
    from hearth.services.thread_tools import ThreadTools

#: services.open_inference: (path, chat body, keep_alive) -> the engine's answer.
Opener = Callable[[str, dict[str, Any], float | None], Awaitable["Answer"]]
#: AssistantService.for_thread: a create body -> the assistant snapshot it starts with, or None.
AssistantOf = Callable[[dict[str, Any]], dict[str, Any] | None]


def page(items: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """OpenAI's list object: `limit` items after the one with id `after`."""
    start = 0
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(
                f"'after' is '{after[:100]}', which is not in this list; pass the last_id of "
                "the previous page.",
                param="after",
            )
        start = ids.index(after) + 1
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }


class ThreadService:
    """Threads and messages of one home. `check_model` raises ModelNotFound for an unknown
    model (a run checks before it writes anything); `open_inference` is Services'."""

    def __init__(
        self,
        store: ThreadStore,
        open_inference: Opener,
        check_model: Callable[[str], object],
        context_overflow: str = "drop-oldest",
        assistant_of: AssistantOf | None = None,
        tools: ThreadTools | None = None,
    ) -> None:
        self.store = store
        self.tools = tools  # MCP tools for runs (services/thread_tools.py); None: none
        self.assistant_of = assistant_of  # None: a body's assistant is not looked up
        self.context_overflow = context_overflow  # the setting (services/context_fit.py)
        self.open_inference = open_inference
        self.check_model = check_model
        #: Ids of the answers this process's runs are writing: every other pending answer a
        #: Hearth run marked has lost its writer (see `hearth.threads.interrupted`).
        self.live = interrupted.LIVE
        self.recovery: threading.Thread | None = None  # the start-up sweep, once started

    # ---- threads ---------------------------------------------------------------------------

    def view(self, thread: StoredThread) -> dict[str, Any]:
        body = thread_view(thread.raw, thread.id, thread.mtime)
        if thread.error:
            body["error"] = thread.error
        return body

    def list_threads(
        self, q: str | None = None, limit: int = 100, after: str | None = None
    ) -> dict[str, Any]:
        """Newest `updated` first; `q` keeps threads whose title or any message contains it
        (case-insensitive). Every thread is read for its place in the order and let go; only
        the page's are kept as views, so a list of thousands of conversations holds `limit`
        of them, not all (memory that grew with the threads on disk, issue 22)."""
        needle = q.casefold() if q else None
        order: list[tuple[float, str]] = []
        for thread in self.store.each():
            view = self.view(thread)
            if needle is None or self._matches(thread, view, needle):
                order.append((-float(view["updated"] or 0), view["id"]))
        order.sort()
        listed = page([{"id": thread_id} for _, thread_id in order], limit, after)
        views = [v for v in map(self._view_of, (item["id"] for item in listed["data"])) if v]
        listed.update(
            data=views,
            first_id=views[0]["id"] if views else None,
            last_id=views[-1]["id"] if views else None,
        )
        return listed

    def _view_of(self, thread_id: str) -> dict[str, Any] | None:
        """A listed thread's view, read again; None if it went away since (a delete)."""
        try:
            return self.view(self.store.get(thread_id))
        except Exception:  # deleted, or a link out now: skipped, as the list skips them
            return None

    def _matches(self, thread: StoredThread, view: dict[str, Any], needle: str) -> bool:
        if needle in str(view["title"]).casefold():
            return True
        try:
            messages = self.store.messages(thread.id, thread)
        except Exception:  # a thread that cannot be read is not a match
            return False
        return any(needle in message_text(raw).casefold() for _, raw in messages)

    def create_thread(self, body: Any) -> dict[str, Any]:
        """A new thread (a UUID, as Jan 0.6 names them), optionally with first messages and
        an assistant (`assistant_id`, or Jan's `assistants: [{"id": ...}]`) copied into it."""
        body = edits.need_object(body, "thread fields (title, model, instructions, ...)")
        assistant = self.assistant_of(body) if self.assistant_of else None
        raw = edits.new_thread(body, assistant, self._provider(body))
        items = body.get("messages") or []
        if not isinstance(items, list) or len(items) > exchange.MAX_MESSAGES:
            raise InvalidRequest("'messages' must be a list of {role, content}.", param="messages")
        messages = [self._new(m, f"messages[{i}].") for i, m in enumerate(items)]
        return self.get_thread(self.store.create(raw, messages))

    @staticmethod
    def _new(item: Any, param: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{param[:-1]}' must be a JSON object.", param=param[:-1])
        return edits.new_message(item, param)

    def get_thread(self, thread_id: str) -> dict[str, Any]:
        return self.view(self.store.get(thread_id))

    def modify_thread(self, thread_id: str, body: Any) -> dict[str, Any]:
        """Change title, model, instructions, parameters, settings, metadata (null clears)."""
        body = edits.need_object(body, "thread fields (title, model, instructions, ...)")
        provider = self._provider(body)
        return self.view(
            self.store.update(
                thread_id, lambda raw: edits.apply_thread_changes(raw, body, provider)
            )
        )

    def _provider(self, body: dict[str, Any]) -> str | None:
        """The Jan provider of the model a request names: `llamacpp` for a local model, its
        engine's name for a remote one; None (local) when it names none or one not known."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return None
        try:
            info = getattr(self.check_model(model), "info", None)
        except Exception:  # an unknown model: a thread may still name it (local by default)
            return None
        engine = getattr(info, "engine", None)
        if getattr(info, "is_remote", False) and isinstance(engine, str) and engine:
            return engine
        return edits.LOCAL_ENGINE

    def delete_thread(self, thread_id: str) -> dict[str, Any]:
        self.store.delete(thread_id)
        return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    def touch(self, thread_id: str) -> None:
        """Bump the thread's `updated` (a thread whose thread.json is broken is left alone)."""
        created = self.get_thread(thread_id)["created"]

        def bump(raw: dict[str, Any]) -> None:
            raw.setdefault("id", thread_id)
            raw.setdefault("object", "thread")
            raw.setdefault("created", created)
            raw["updated"] = edits.now()

        with contextlib.suppress(Conflict):
            self.store.update(thread_id, bump)

    # ---- messages --------------------------------------------------------------------------

    def messages(self, thread_id: str, thread: StoredThread | None = None) -> list[Message]:
        """The thread's messages as a reader should see them: an answer whose writer is gone
        is marked `error` first (a write, under the thread's lock), never shown as pending."""
        thread = thread or self.store.get(thread_id)
        found = self.store.messages(thread_id, thread)
        if self._recover(thread_id, found, unmarked=False):
            found = self.store.messages(thread_id)
        return found

    def start_recovery(self) -> threading.Thread:
        """`recover_interrupted` beside the server, not before it: a home with thousands of
        threads must not delay /health, and a reader meanwhile gets the same repair."""
        worker = threading.Thread(
            target=self.recover_interrupted, name="hearth-thread-recovery", daemon=True
        )
        worker.start()
        self.recovery = worker
        return worker

    def recover_interrupted(self) -> int:
        """At start: every pending answer of the home has lost its writer (one server per
        home, and this one runs none yet but those in `live`). How many were marked."""
        count = 0
        for thread in self.store.all():
            try:
                count += self._recover(thread.id, self.store.messages(thread.id, thread),
                                       unmarked=True)  # fmt: skip
            except Exception as exc:  # an unreadable thread stays as it is; the rest go on
                log.warning("could not check threads/%s for interrupted answers: %s",
                            thread.id, exc)  # fmt: skip
        if count:
            log.warning("marked %d answer(s) interrupted by a server that stopped", count)
        return count

    def _recover(self, thread_id: str, found: Iterable[Message], *, unmarked: bool) -> int:
        """Mark the orphaned pending answers among `found` (re-checked under the lock)."""
        marked: list[str] = []
        for mid, raw in found:
            if not interrupted.is_orphan(raw, mid, self.live, unmarked=unmarked):
                continue

            def change(data: dict[str, Any], mid: str = mid) -> None:
                if interrupted.is_orphan(data, mid, self.live, unmarked=unmarked):
                    interrupted.mark_interrupted(data)
                    marked.append(mid)

            with contextlib.suppress(NotFound, Conflict):  # gone, or in thread.json (read-only)
                self.store.edit_message(thread_id, mid, change)
        return len(marked)

    def message_views(
        self, thread_id: str, messages: Iterable[Message] | None = None
    ) -> list[dict[str, Any]]:
        found = self.messages(thread_id) if messages is None else messages
        return [message_view(raw, mid, thread_id) for mid, raw in found]

    def list_messages(
        self, thread_id: str, order: str = "asc", limit: int = 1000, after: str | None = None
    ) -> dict[str, Any]:
        views = self.message_views(thread_id)
        if order == "desc":
            views.reverse()
        listed = page(views, limit, after)
        skipped = self.store.skipped_lines(thread_id)
        if skipped:  # named, so a reader knows the thread is not whole (Jan shows none of it)
            listed["skipped_lines"] = skipped
        return listed

    def create_message(self, thread_id: str, body: Any) -> dict[str, Any]:
        message = edits.new_message(edits.need_object(body, "a message {role, content}"))
        message["thread_id"] = thread_id  # Jan's ThreadMessage carries it
        self.store.append(thread_id, [message])
        self.touch(thread_id)
        return message_view(message, message["id"], thread_id)

    def get_message(self, thread_id: str, message_id: str) -> dict[str, Any]:
        validate_message_id(message_id)
        for view in self.message_views(thread_id):
            if view["id"] == message_id:
                return view
        raise message_not_found(thread_id, message_id)

    def modify_message(self, thread_id: str, message_id: str, body: Any) -> dict[str, Any]:
        """Edit content, status or metadata (merged) of one message."""
        body = edits.need_object(body, "message fields (content, status, metadata)")
        edits.apply_message_changes({}, body)  # a bad field is a 400 before the lock is taken
        data = self.store.edit_message(
            thread_id, message_id, lambda raw: edits.apply_message_changes(raw, body)
        )
        self.touch(thread_id)
        return message_view(data, message_id, thread_id)

    def delete_message(
        self, thread_id: str, message_id: str, and_after: bool = False
    ) -> dict[str, Any]:
        count = self.store.delete_messages(thread_id, message_id, and_after=and_after)
        self.touch(thread_id)
        return {
            "id": message_id,
            "object": "thread.message.deleted",
            "deleted": True,
            "count": count,
        }

    # ---- export and import -----------------------------------------------------------------

    def export_thread(self, thread_id: str) -> dict[str, Any]:
        """Hearth's export: thread.json and the messages as stored."""
        thread = self.store.get(thread_id)
        messages = [raw for _, raw in self.messages(thread_id, thread)]
        stored = dict(thread.raw) if thread.raw else {"id": thread_id, "object": "thread"}
        stored.pop("messages", None)  # an early draft's: exported with the others, below
        return exchange.export_document(stored, messages)

    def export_markdown(self, thread_id: str) -> str:
        thread = self.store.get(thread_id)
        return exchange.markdown(
            self.view(thread), self.message_views(thread_id, self.messages(thread_id, thread))
        )

    def import_thread(self, doc: Any) -> dict[str, Any]:
        """A new thread from an export: its id if free, else a new UUID."""
        raw, messages, wanted = exchange.checked_import(doc)
        raw.pop("messages", None)
        return self.get_thread(self.store.create(raw, messages, wanted))

    # ---- runs ------------------------------------------------------------------------------

    async def start_run(self, thread_id: str, body: Any, message_id: str | None = None) -> Run:
        """Ask the thread's model to answer (see `thread_runs.start`); `message_id` names the
        answer (a new id when None)."""
        from hearth.services.thread_runs import start

        return await start(self, thread_id, body, message_id)

    async def decide_call(self, thread_id: str, message_id: str, body: Any) -> Run:
        """The user's decision on a call that waits for approval, and the run that continues
        its answer (services/thread_approval.py)."""
        from hearth.services.thread_approval import resume

        return await resume(self, thread_id, message_id, body)
