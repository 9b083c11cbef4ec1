// The chat view: one conversation (a thread on disk), the composer, the model picker, runs.
//
// A message is sent as the API would be used by hand: create the thread on the first message,
// append the user's message, then start a run, which streams the answer while the server saves
// it. The stop button aborts the fetch; the server then marks the answer `stopped`.

import { api, enc, raw, readEvents } from "./api.js";
import { AssistantPicker, label, threadAssistant } from "./assistants.js";
import { markdownReady, messageElement, textOf, thinkingDots, toolCallsOf } from "./messages.js";
import { LiveCalls, ToolPicker, forgetApprovals } from "./tools.js";
import { STATUS_TEXT, capabilitiesOf, h, icon, toast } from "./ui.js";

const MODEL_STORE = "hearth.model";
const PAGE = 500; // messages drawn at once; older ones behind a "Show earlier messages" button
const $ = (id) => document.getElementById(id);

/** One page of a thread's messages, oldest first, ending at the newest (or before `before`). */
async function messagePage(threadId, before = null) {
  const after = before ? `&after=${enc(before)}` : "";
  const list = await api(`/v1/threads/${enc(threadId)}/messages?order=desc&limit=${PAGE}${after}`);
  const skipped = Array.isArray(list.skipped_lines) ? list.skipped_lines : [];
  return { messages: list.data.reverse(), earlier: list.has_more ? list.last_id : null, skipped };
}

/** Lines of messages.jsonl that are not messages: the rest is shown, these are named. */
function skippedNote(lines) {
  const which = lines.length === 1 ? `Line ${lines[0]}` : `Lines ${lines.slice(0, 10).join(", ")}${lines.length > 10 ? "…" : ""}`;
  return h("p.skipped-note", { role: "note" }, `${which} of this conversation's messages.jsonl ${lines.length === 1 ? "is" : "are"} not a message Hearth can read: left out here, kept in the file.`);
}

/**
 * What the picker shows for each model: its name, or its id where another model has the same
 * name (Jan names a model after the last part of its id, so `a/Qwen3-4B` and `b/Qwen3-4B` would
 * read alike).
 */
export function pickerLabels(models) {
  const seen = new Map();
  for (const m of models) seen.set(m.name || m.id, (seen.get(m.name || m.id) ?? 0) + 1);
  return new Map(models.map((m) => [m.id, m.name && seen.get(m.name) === 1 ? m.name : m.id]));
}

export class Chat {
  constructor(store, sidebar) {
    this.store = store; // {models, refreshModels(), running}
    this.sidebar = sidebar;
    this.thread = null;
    this.messages = [];
    this.earlier = null; // the oldest message drawn, when there are older ones
    this.loadingEarlier = false;
    this.draft = { instructions: null, parameters: {}, settings: {}, metadata: {} };
    this.controller = null;
    this.images = [];
    this.list = $("messages");
    this.input = $("composer-input");
    this.select = $("model-select");
    this.assistant = new AssistantPicker();
    this.tools = new ToolPicker();
    this.bind();
  }

  bind() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener("input", () => this.autosize());
    this.input.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
      if (files.length && this.visionOk()) this.attach(files);
    });
    $("stop-button").addEventListener("click", () => this.controller?.abort());
    $("attach-button").addEventListener("click", () => $("attach-input").click());
    $("attach-input").addEventListener("change", (event) => {
      this.attach([...event.target.files]);
      event.target.value = "";
    });
    this.select.addEventListener("change", () => this.pickModel(this.select.value));
    $("thread-settings").addEventListener("click", () => this.openSettings());
    $("thread-export").addEventListener("click", () => this.exportThread());
    $("settings-form").addEventListener("submit", (event) => this.saveSettings(event));
    for (const [id, format] of [["export-json", "json"], ["export-md", "markdown"]]) {
      $(id).addEventListener("click", (event) => {
        event.preventDefault();
        this.exportThread(format);
      });
    }
    $("settings-dialog").querySelector("[data-close]").addEventListener("click", () => $("settings-dialog").close());
    document.addEventListener("hearth:thread-renamed", (event) => {
      if (this.thread?.id === event.detail.id) this.setTitle(event.detail.title);
    });
  }

  // ---- opening a conversation -----------------------------------------------------------

  async open(threadId) {
    if (this.controller) this.controller.abort();
    this.images = [];
    this.renderAttachments();
    if (!threadId) {
      this.thread = null;
      this.messages = [];
      this.skipped = [];
      this.earlier = null;
      this.draft = { instructions: null, parameters: {}, settings: {}, metadata: {} };
      this.setTitle("New chat");
      await this.render();
      this.updatePicker();
      await this.assistant.show(null);
      return;
    }
    try {
      const [thread, page] = await Promise.all([api(`/v1/threads/${enc(threadId)}`), messagePage(threadId)]);
      this.thread = thread;
      this.messages = page.messages;
      this.earlier = page.earlier;
      this.skipped = page.skipped;
    } catch (error) {
      toast(`Could not open the conversation: ${error.message}`, { error: true });
      location.hash = "#/";
      return;
    }
    this.setTitle(this.thread.title || "Untitled");
    await this.render();
    this.updatePicker();
    await this.assistant.show(this.thread);
  }

  setTitle(title) {
    $("chat-title").textContent = title;
    document.title = `${title} · Hearth`;
    $("thread-export").disabled = !this.thread;
  }

  async render({ keepScroll = false } = {}) {
    if (this.messages.length) await markdownReady; // a new chat is drawn without Markdown
    const welcome = $("welcome");
    const last = this.messages.at(-1);
    const elements = this.messages
      .filter((m) => m.role === "user" || m.role === "assistant")
      .map((m) => {
        const el = messageElement(m, this.actions());
        if (m === last) el.classList.add("last");
        return el;
      });
    welcome.hidden = elements.length > 0;
    const more = this.earlier && h("button.button.earlier", { type: "button", onclick: () => this.showEarlier() }, "Show earlier messages");
    const fromBottom = this.list.scrollHeight - this.list.scrollTop;
    const skipped = this.thread && this.skipped?.length ? [skippedNote(this.skipped)] : [];
    this.list.replaceChildren(welcome, ...skipped, ...(more ? [more] : []), ...elements);
    if (keepScroll) this.list.scrollTop = this.list.scrollHeight - fromBottom;
    else this.scrollToEnd(true);
  }

  /**
   * The page of messages before the oldest one drawn, above it, the view kept where it was.
   * Not while an answer streams (its element is not in this.messages yet), and once per page.
   */
  async showEarlier() {
    const threadId = this.thread?.id;
    const before = this.earlier;
    if (this.controller || this.loadingEarlier || !before) return;
    this.loadingEarlier = true;
    try {
      const page = await messagePage(threadId, before);
      if (this.thread?.id !== threadId || this.earlier !== before || this.controller) return;
      this.messages = [...page.messages, ...this.messages];
      this.earlier = page.earlier;
      await this.render({ keepScroll: true });
    } catch (error) {
      toast(`Could not load earlier messages: ${error.message}`, { error: true });
      if (error.status === 400 || error.status === 404) await this.open(threadId); // changed elsewhere
    } finally {
      this.loadingEarlier = false;
    }
  }

  /** The newest page, after a run: kept after the older messages already drawn. */
  mergeNewest(page) {
    const start = this.messages.findIndex((m) => m.id === page.messages[0]?.id);
    if (start < 0) {
      this.messages = page.messages;
      this.earlier = page.earlier;
    } else {
      this.messages = [...this.messages.slice(0, start), ...page.messages];
    }
  }

  actions() {
    return {
      edit: (message, text) => this.editAndResend(message, text),
      regenerate: (message) => this.regenerate(message),
      decide: (message, callId, decision) => this.decide(message, callId, decision),
    };
  }

  scrollToEnd(force = false) {
    const list = this.list;
    const near = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
    if (force || near) list.scrollTop = list.scrollHeight;
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, window.innerHeight * 0.4)}px`;
  }

  // ---- the model picker -----------------------------------------------------------------

  chatModels() {
    return this.store.models.filter((m) => m.status !== "invalid" && capabilitiesOf(m).includes("completion"));
  }

  currentModelId() {
    const models = this.chatModels();
    const wanted = [this.thread?.model, this.select.value, localStorage.getItem(MODEL_STORE)];
    for (const id of wanted) if (id && models.some((m) => m.id === id)) return id;
    return (models.find((m) => m.status === "running") ?? models[0])?.id ?? "";
  }

  updatePicker() {
    const models = this.chatModels();
    const current = this.currentModelId();
    const shown = pickerLabels(models);
    const options = models.map((m) => {
      const status = STATUS_TEXT[m.status] ?? m.status;
      return h("option", { value: m.id, title: m.id, selected: m.id === current }, `${shown.get(m.id)} · ${status}`);
    });
    if (!models.length) options.push(h("option", { value: "" }, "No models: add one in Models"));
    const signature = options.map((o) => o.value + o.textContent).join("|") + current;
    if (signature !== this.pickerSignature) {
      this.select.replaceChildren(...options);
      this.select.value = current;
      this.pickerSignature = signature;
    }
    const model = models.find((m) => m.id === current);
    this.select.title = current; // the full id (Jan's nest, `org/name`) where the label is cut
    $("model-dot").className = `status-dot ${model?.status ?? ""}`;
    $("model-status").textContent = model ? `${model.name || model.id}: ${STATUS_TEXT[model.status] ?? model.status}` : "";
    $("attach-button").hidden = !this.visionOk();
    $("send-button").disabled = !model;
  }

  visionOk() {
    const model = this.store.models.find((m) => m.id === this.currentModelId());
    return Boolean(model && capabilitiesOf(model).includes("vision"));
  }

  async pickModel(id) {
    localStorage.setItem(MODEL_STORE, id);
    if (this.thread) {
      try {
        this.thread = await api(`/v1/threads/${enc(this.thread.id)}`, { method: "POST", body: { model: id } });
      } catch (error) {
        toast(`Could not change the model: ${error.message}`, { error: true });
      }
    }
    this.updatePicker();
  }

  /** Load the model before the first run (with the thread's context), showing progress. */
  async ensureLoaded(modelId) {
    const ctx = Number((this.thread?.settings ?? this.draft.settings)?.ctx_len) || null;
    const running = (await api("/v1/running")).data.find((r) => r.id === modelId);
    if (running && (!ctx || Number(running.engine_parameters?.ctx_len) === ctx)) return;
    const model = this.store.models.find((m) => m.id === modelId);
    const bar = $("loading-bar");
    const started = performance.now();
    const label = () => {
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      $("loading-text").textContent = `Loading ${model?.name || modelId}… ${seconds} s`;
    };
    label();
    bar.hidden = false;
    $("model-dot").className = "status-dot starting";
    const timer = setInterval(label, 500);
    try {
      await api(`/v1/models/${enc(modelId)}/start`, { method: "POST", body: ctx ? { ctx_len: ctx } : {} });
    } finally {
      clearInterval(timer);
      bar.hidden = true;
      this.store.refreshModels();
    }
  }

  // ---- sending and running --------------------------------------------------------------

  async send() {
    const text = this.input.value.trim();
    if ((!text && !this.images.length) || this.controller) return;
    const model = this.currentModelId();
    if (!model) {
      toast("Add a model first (Models, in the sidebar).", { error: true });
      return;
    }
    const content = [];
    if (text) content.push({ type: "text", text: { value: text, annotations: [] } });
    for (const url of this.images) content.push({ type: "image_url", image_url: { url } });
    this.input.value = "";
    this.autosize();
    this.images = [];
    this.renderAttachments();
    try {
      if (!this.thread) await this.createThread(text, model);
      const message = await api(`/v1/threads/${enc(this.thread.id)}/messages`, {
        method: "POST",
        body: { role: "user", content },
      });
      this.messages.push(message);
      await this.render();
    } catch (error) {
      this.input.value = text;
      toast(`Could not send: ${error.message}`, { error: true });
      return;
    }
    await this.run();
  }

  async createThread(text, model) {
    const flat = text.replace(/\s+/g, " ").trim();
    const title = (flat.length > 60 ? `${flat.slice(0, 59).trimEnd()}…` : flat) || "Image";
    const { instructions, parameters, settings, metadata } = this.draft;
    const body = { title, model, parameters, settings, metadata };
    if (instructions) body.instructions = instructions;
    const assistant = this.assistant.chosen(); // Jan's snapshot of it goes into the thread
    if (assistant) body.assistant_id = assistant;
    this.thread = await api("/v1/threads", { method: "POST", body });
    this.assistant.show(this.thread);
    this.setTitle(this.thread.title);
    history.replaceState(null, "", `#/t/${enc(this.thread.id)}`);
    this.sidebar.activeId = this.thread.id;
    this.sidebar.upsert(this.thread);
  }

  setBusy(busy) {
    $("send-button").hidden = busy;
    $("stop-button").hidden = !busy;
    if (busy) $("stop-button").focus();
    else if (document.activeElement === document.body || document.activeElement?.id === "stop-button") this.input.focus();
  }

  /**
   * Stream an answer: a new run, or (`resume`: {message, callId, decision}) the user's decision
   * on a call that waits, which continues that same message. Tool calls show as they run.
   */
  async run(resume = null) {
    const threadId = this.thread.id;
    const model = (resume && resume.message.model) || this.currentModelId();
    this.controller = new AbortController();
    this.setBusy(true);
    const el = h("article.message.assistant.last", { "aria-label": "Answer", "aria-busy": "true" });
    const calls = new LiveCalls(resume ? toolCallsOf(resume.message) : []);
    const content = h("div.content", {}, thinkingDots());
    el.append(calls.box, content);
    this.list.querySelectorAll(".message.last").forEach((m) => m.classList.remove("last"));
    const old = resume && this.list.querySelector(`.message[data-id="${CSS.escape(resume.message.id)}"]`);
    if (old) old.replaceWith(el);
    else this.list.append(el);
    this.scrollToEnd(true);
    let messageId = resume ? resume.message.id : null;
    let view = null;
    const { StreamView } = await markdownReady;
    const before = resume ? textOf(resume.message) : "";
    const path = resume
      ? `/v1/threads/${enc(threadId)}/messages/${enc(resume.message.id)}/approval`
      : `/v1/threads/${enc(threadId)}/runs`;
    const body = resume ? { call_id: resume.callId, decision: resume.decision, stream: true } : { model, stream: true };
    try {
      await this.ensureLoaded(model);
      const response = await raw(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
        signal: this.controller.signal,
      });
      messageId = response.headers.get("X-Hearth-Message-Id") ?? messageId;
      if (messageId) el.dataset.id = messageId;
      await readEvents(response, (data, event) => {
        if (event === "tool_call" || event === "tool_result") {
          calls.update(event, JSON.parse(data));
          this.scrollToEnd();
          return;
        }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message ?? String(chunk.error));
        const delta = chunk.choices?.[0]?.delta?.content;
        if (!delta) return;
        if (!view) {
          performance.mark("hearth:first-token");
          view = new StreamView(content);
          view.onPaint = () => performance.mark("hearth:first-paint");
          if (before) view.append(`${before}\n\n`);
        }
        view.append(delta);
        this.scrollToEnd();
      }, (comment) => {
        if (!view) promptProgress(content, comment);
      });
    } catch (error) {
      if (error.name !== "AbortError") toast(`The answer failed: ${error.message}`, { error: true });
    } finally {
      this.controller = null;
      this.setBusy(false);
    }
    await this.settle(threadId, messageId, el, view);
  }

  /** The user's choice on a call that waits: the answer goes on in the same message. */
  async decide(message, callId, decision) {
    if (this.controller || !this.thread) return;
    await this.run({ message, callId, decision });
  }

  /** After a run: show the saved message (its final text, status and figures). */
  async settle(threadId, messageId, el, view) {
    if (this.thread?.id !== threadId) return;
    let saved = null;
    for (let tries = 0; tries < 10 && !saved; tries += 1) {
      const page = await messagePage(threadId).catch(() => null);
      const list = page?.messages;
      const found = list?.find((m) => m.id === messageId) ?? (messageId ? null : list?.at(-1));
      if (page) this.mergeNewest(page);
      if (found && found.status !== "pending") saved = found;
      else await new Promise((r) => setTimeout(r, 150));
    }
    if (!saved) return await this.render();
    el.removeAttribute("aria-busy");
    if (view) view.finish(textOf(saved));
    if (!el.isConnected) return await this.render(); // the list was redrawn meanwhile
    const fresh = messageElement(saved, this.actions());
    fresh.classList.add("last");
    el.replaceWith(fresh);
    this.sidebar.refresh();
    this.scrollToEnd();
  }

  async editAndResend(message, text) {
    if (this.controller) return;
    const threadId = this.thread.id;
    const parts = (Array.isArray(message.content) ? message.content : []).filter((p) => p?.type === "image_url");
    const content = [{ type: "text", text: { value: text, annotations: [] } }, ...parts];
    try {
      await api(`/v1/threads/${enc(threadId)}/messages/${enc(message.id)}`, { method: "PATCH", body: { content } });
      // the message after it, as the file has it (not as this page last drew it)
      const after = await api(`/v1/threads/${enc(threadId)}/messages?after=${enc(message.id)}&limit=1`);
      const next = after.data[0];
      if (next) {
        await api(`/v1/threads/${enc(threadId)}/messages/${enc(next.id)}?and_after=true`, { method: "DELETE" });
      }
      await this.open(threadId);
    } catch (error) {
      toast(`Could not edit: ${error.message}`, { error: true });
      return;
    }
    await this.run();
  }

  async regenerate(message) {
    if (this.controller) return;
    const threadId = this.thread.id;
    try {
      await api(`/v1/threads/${enc(threadId)}/messages/${enc(message.id)}?and_after=true`, { method: "DELETE" });
      await this.open(threadId);
    } catch (error) {
      toast(`Could not regenerate: ${error.message}`, { error: true });
      return;
    }
    await this.run();
  }

  // ---- images ---------------------------------------------------------------------------

  async attach(files) {
    for (const file of files.filter((f) => f.type.startsWith("image/")).slice(0, 4)) {
      try {
        this.images.push(await shrink(file));
      } catch {
        toast(`${file.name} is not an image this browser can read.`, { error: true });
      }
    }
    this.renderAttachments();
  }

  renderAttachments() {
    const box = $("attachments");
    box.replaceChildren(...this.images.map((url, index) => h("div.attachment", {},
      h("img", { src: url, alt: `Attached image ${index + 1}` }),
      h("button", { type: "button", "aria-label": `Remove image ${index + 1}`, onclick: () => {
        this.images.splice(index, 1);
        this.renderAttachments();
      } }, icon("close")))));
  }

  // ---- per-thread settings and export -----------------------------------------------------

  openSettings() {
    const source = this.thread ?? this.draft;
    const params = source.parameters ?? {};
    $("set-instructions").value = source.instructions ?? "";
    const own = this.thread ? threadAssistant(this.thread) : null;
    const chosen = !this.thread && this.assistant.chosen();
    const named = own ?? this.assistant.assistants.find((a) => a.id === chosen);
    const inherited = named?.parameters ?? {}; // the assistant's, unless set here
    for (const [key, id] of [["temperature", "set-temperature"], ["top_p", "set-top-p"], ["max_tokens", "set-max-tokens"]]) {
      const value = inherited[key] ?? (key === "max_tokens" ? inherited.max_output_tokens : undefined);
      $(id).placeholder = typeof value === "number" ? `assistant: ${value}` : "model default";
    }
    $("set-assistant").hidden = !named;
    $("set-assistant").textContent = named
      ? `Assistant: ${label(named)}. ${own ? "Its instructions are the system prompt below." : "Its instructions are the system prompt unless you write one here."}`
      : "";
    $("set-temperature").value = params.temperature ?? "";
    $("set-top-p").value = params.top_p ?? "";
    $("set-max-tokens").value = params.max_tokens ?? "";
    $("set-ctx").value = source.settings?.ctx_len ?? "";
    $("set-overflow").value = source.metadata?.context_overflow ?? "";
    $("export-links").hidden = !this.thread;
    this.tools.show(source.metadata?.mcp, this.thread ? source.metadata?.mcp_approved : null);
    $("settings-dialog").showModal();
  }

  async saveSettings(event) {
    if (event.submitter?.value !== "save") return;
    const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
    const parameters = { ...(this.thread ?? this.draft).parameters };
    for (const [key, id] of [["temperature", "set-temperature"], ["top_p", "set-top-p"], ["max_tokens", "set-max-tokens"]]) {
      const value = number(id);
      if (value === undefined) delete parameters[key];
      else parameters[key] = value;
    }
    const settings = { ...(this.thread ?? this.draft).settings };
    const ctx = number("set-ctx");
    if (ctx === undefined) delete settings.ctx_len;
    else settings.ctx_len = ctx;
    const instructions = $("set-instructions").value.trim() || null;
    // What a conversation too long for the model does: Jan keeps thread.json's metadata as
    // it is, so the choice lives there (null: the server's `context_overflow` setting).
    const overflow = $("set-overflow").value || null;
    // The MCP servers and tools this conversation turns on (Hearth's key in its thread.json);
    // undefined while the server list has not loaded: left as it is.
    const mcp = this.tools.value();
    if (!this.thread) {
      const metadata = { ...this.draft.metadata };
      if (overflow) metadata.context_overflow = overflow;
      else delete metadata.context_overflow;
      if (mcp) metadata.mcp = mcp;
      else if (mcp === null) delete metadata.mcp;
      this.draft = { instructions, parameters, settings, metadata };
      return;
    }
    const metadata = { context_overflow: overflow };
    if (mcp !== undefined) metadata.mcp = mcp;
    if (forgetApprovals()) metadata.mcp_approved = null; // its tools ask again
    try {
      this.thread = await api(`/v1/threads/${enc(this.thread.id)}`, {
        method: "POST",
        body: { instructions, parameters, settings, metadata },
      });
      toast("Settings saved for this conversation.");
    } catch (error) {
      toast(`Could not save the settings: ${error.message}`, { error: true });
    }
  }

  /** Download the conversation as one JSON file (to import elsewhere) or as Markdown. */
  async exportThread(format = "json") {
    if (!this.thread) return;
    const query = format === "markdown" ? "?format=markdown" : "";
    const response = await raw(`/v1/threads/${enc(this.thread.id)}/export${query}`);
    const blob = await response.blob();
    const name = (this.thread.title || this.thread.id).replace(/[^\w.-]+/g, "-").slice(0, 60);
    const ext = format === "markdown" ? "md" : "json";
    const link = h("a", { href: URL.createObjectURL(blob), download: `${name}.${ext}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }
}

/**
 * A picture as a JPEG data: URL at most 1024 px on its longer side. Vision models see about
 * that much anyway, and a conversation's file stays small (a phone photo is several MB).
 */
async function shrink(file, longest = 1024) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, longest / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // transparent PNGs become white, not black, as JPEG
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", 0.85);
}

/**
 * While the engine reads a long prompt the run's stream says how far it is (`prompt 1234/19500`
 * comments): shown under the waiting dots until the first token replaces them.
 */
function promptProgress(content, comment) {
  const found = /^prompt (\d+)\/(\d+)$/.exec(comment);
  if (!found) return;
  const [read, total] = [Number(found[1]), Number(found[2])];
  const text = `Reading the prompt: ${read.toLocaleString()} of ${total.toLocaleString()} tokens`;
  let line = content.querySelector(".prompt-progress");
  if (!line) {
    line = h("p.prompt-progress", { role: "status" });
    content.append(line);
  }
  line.textContent = text;
}
