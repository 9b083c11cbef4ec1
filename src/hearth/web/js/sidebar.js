// The conversation list: newest first, search by title and text, rename, delete.
// Conversations are folders on disk (they may change under us: Jan, a hand edit, another tab),
// so the list is fetched again when the window regains focus and every few seconds.

import { api, enc } from "./api.js";
import { ago, confirmDialog, h, iconButton, toast } from "./ui.js";

const POLL_MS = 4000;

export class Sidebar {
  constructor({ onDeleted }) {
    this.list = document.getElementById("thread-list");
    this.empty = document.getElementById("thread-empty");
    this.search = document.getElementById("thread-search");
    this.onDeleted = onDeleted;
    this.threads = [];
    this.activeId = null;
    this.renaming = null;
    this.signature = "";
    let timer = null;
    this.search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.refresh(), 200);
    });
    window.addEventListener("focus", () => this.refresh());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.refresh();
    });
    setInterval(() => {
      if (!document.hidden) this.refresh();
    }, POLL_MS);
    const file = document.getElementById("thread-import-input");
    document.getElementById("thread-import").addEventListener("click", () => file.click());
    file.addEventListener("change", () => {
      if (file.files[0]) this.importFile(file.files[0]);
      file.value = "";
    });
  }

  /** A conversation exported as JSON (by Hearth, here or on another machine) becomes a thread. */
  async importFile(file) {
    try {
      const body = JSON.parse(await file.text());
      const thread = await api("/v1/threads/import", { method: "POST", body });
      this.upsert(thread);
      location.hash = `#/t/${enc(thread.id)}`;
    } catch (error) {
      toast(`Could not import ${file.name}: ${error.message}`, { error: true });
    }
  }

  async refresh() {
    const q = this.search.value.trim();
    const query = q ? `?limit=100&q=${enc(q)}` : "?limit=100";
    try {
      const body = await api(`/v1/threads${query}`);
      if (q !== this.search.value.trim()) return; // a newer search is on its way
      this.threads = body.data;
      this.render();
    } catch (error) {
      if (error.status !== 401) console.warn("threads:", error.message);
    }
  }

  setActive(id) {
    this.activeId = id;
    for (const item of this.list.children) {
      const active = item.dataset.id === id;
      item.classList.toggle("active", active);
      item.querySelector("a")?.toggleAttribute("aria-current", active);
    }
  }

  /** Update one thread's title or time without waiting for the next poll. */
  upsert(thread) {
    const others = this.threads.filter((t) => t.id !== thread.id);
    this.threads = [thread, ...others];
    this.render(true);
  }

  render(force = false) {
    if (this.renaming) return; // never pull the input from under the user's fingers
    const signature = JSON.stringify(this.threads.map((t) => [t.id, t.title, t.updated]));
    if (!force && signature === this.signature) {
      this.setActive(this.activeId);
      return;
    }
    this.signature = signature;
    const focusedId = document.activeElement?.closest?.(".thread-item")?.dataset.id;
    this.list.replaceChildren(...this.threads.map((t) => this.item(t)));
    this.empty.hidden = this.threads.length > 0;
    this.empty.textContent = this.search.value.trim() ? "Nothing matches." : "No conversations yet.";
    this.setActive(this.activeId);
    if (focusedId) this.list.querySelector(`[data-id="${CSS.escape(focusedId)}"] a`)?.focus();
  }

  item(thread) {
    const title = thread.title || "Untitled";
    const link = h("a", { href: `#/t/${enc(thread.id)}` },
      h("span.title", {}, title), h("span.when", {}, ago(thread.updated || thread.created)));
    const actions = h("div.actions", {},
      iconButton("pencil", `Rename “${title}”`, () => this.rename(thread)),
      iconButton("trash", `Delete “${title}”`, () => this.remove(thread)));
    return h("li.thread-item", { "data-id": thread.id }, link, actions);
  }

  rename(thread) {
    const item = this.list.querySelector(`[data-id="${CSS.escape(thread.id)}"]`);
    if (!item) return;
    this.renaming = thread.id;
    const input = h("input", { type: "text", "aria-label": "New title", maxlength: "200" });
    input.value = thread.title || "";
    item.replaceChildren(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      this.renaming = null;
      const title = input.value.trim();
      if (save && title && title !== thread.title) {
        try {
          this.upsert(await api(`/v1/threads/${enc(thread.id)}`, { method: "POST", body: { title } }));
          document.dispatchEvent(new CustomEvent("hearth:thread-renamed", { detail: { id: thread.id, title } }));
        } catch (error) {
          toast(`Could not rename: ${error.message}`, { error: true });
        }
      }
      this.render(true);
      this.list.querySelector(`[data-id="${CSS.escape(thread.id)}"] a`)?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") finish(true);
      if (event.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
  }

  async remove(thread) {
    const title = thread.title || "Untitled";
    const ok = await confirmDialog("Delete this conversation?", `“${title}” and its messages are deleted from disk.`);
    if (!ok) return;
    try {
      await api(`/v1/threads/${enc(thread.id)}`, { method: "DELETE" });
      this.threads = this.threads.filter((t) => t.id !== thread.id);
      this.render(true);
      this.onDeleted(thread.id);
    } catch (error) {
      toast(`Could not delete: ${error.message}`, { error: true });
    }
  }
}
