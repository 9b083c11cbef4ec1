// The assistant picker: on a new chat, which assistant (Jan's assistants/<id>/assistant.json,
// listed by GET /v1/assistants) the conversation starts with; on an open one, which assistant
// it was started with (the snapshot in its thread.json, read-only: a conversation keeps the
// assistant it began with). The last one chosen is remembered under Jan's own localStorage
// key, `last-used-assistant`; Jan's default `jan` is the first choice when none was.

import { api } from "./api.js";
import { h } from "./ui.js";

export const LAST_USED = "last-used-assistant";
const NONE = ""; // "No assistant": the model alone, with the conversation's own settings
const DEFAULT = "jan";
const $ = (id) => document.getElementById(id);

/** "👋 Jan": the avatar (an emoji, or nothing) and the name, as plain text. */
export function label(assistant) {
  const avatar = typeof assistant?.avatar === "string" ? assistant.avatar.trim() : "";
  const name = assistant?.name || assistant?.id || "";
  return avatar && avatar.length <= 16 ? `${avatar} ${name}` : name;
}

/** The assistant a thread was started with (Jan's snapshot), or null (none, or Jan's
 *  "model-only" placeholder, or an early thread's {assistant_id} record). */
export function threadAssistant(thread) {
  const first = thread?.assistants?.[0];
  if (!first || typeof first.id !== "string" || first.id === "model-only") return null;
  return first;
}

export class AssistantPicker {
  constructor() {
    this.select = $("assistant-select");
    this.box = $("assistant-picker");
    this.assistants = [];
    this.thread = null;
    this.select.addEventListener("change", () => {
      try {
        localStorage.setItem(LAST_USED, this.select.value);
      } catch {
        /* storage refused: the choice still holds for this chat */
      }
    });
  }

  /** The usable assistants (a broken assistant.json cannot start a conversation). */
  async load() {
    try {
      const listed = await api("/v1/assistants?limit=1000");
      this.assistants = listed.data.filter((a) => !a.error);
    } catch {
      this.assistants = [];
    }
  }

  /** Show the choice for a new chat (thread null), or the open conversation's assistant. */
  async show(thread) {
    this.thread = thread;
    if (!thread) await this.load();
    const own = threadAssistant(thread);
    if (thread) {
      const text = own ? label(own) : "No assistant";
      this.select.replaceChildren(h("option", { value: own?.id ?? NONE }, text));
      this.select.disabled = true;
      this.select.title = own ? `Assistant: ${label(own)} (kept from the start of this conversation)` : "";
      this.box.hidden = !own;
      return;
    }
    const options = [h("option", { value: NONE }, "No assistant"), ...this.assistants.map((a) => h("option", { value: a.id }, label(a)))];
    this.select.replaceChildren(...options);
    this.select.disabled = false;
    this.select.title = "The assistant this conversation starts with";
    this.select.value = this.initial();
    this.box.hidden = this.assistants.length === 0;
  }

  /** The last one used if it still exists, else Jan's default, else none (as Jan does). */
  initial() {
    let last = null;
    try {
      last = localStorage.getItem(LAST_USED);
    } catch {
      last = null;
    }
    const ids = new Set(this.assistants.map((a) => a.id));
    if (last !== null && (last === NONE || ids.has(last))) return last;
    return ids.has(DEFAULT) ? DEFAULT : NONE;
  }

  /** The id a new conversation starts with, or null. */
  chosen() {
    return !this.thread && this.select.value ? this.select.value : null;
  }
}
