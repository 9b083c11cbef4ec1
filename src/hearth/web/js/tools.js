// MCP tools in a conversation: the picker in its settings, each call's folded card (as it runs,
// and as saved), and the card that asks the user before a call runs.
//
// A conversation keeps its choice in thread.json (`metadata.mcp`: the servers it turns on, the
// tools it turns off, whether the first turn must use a tool). The servers themselves are the
// user's (mcp.json): the picker lists what GET /v1/mcp/servers says is configured.

import { api } from "./api.js";
import { h } from "./ui.js";

/** The user's choices on a call that waits, as the approval route names them. */
export const DECISIONS = [
  ["once", "Allow once"],
  ["thread", "Allow for this conversation"],
  ["always", "Always allow this tool"],
  ["deny", "Deny"],
];

function pretty(value) {
  if (typeof value !== "string") return JSON.stringify(value ?? {}, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}

/** What a call's card says of it: running, waiting, done, failed, denied, stopped. */
function stateText(call, waiting) {
  if (waiting) return "Waiting for your approval";
  if (call.state === "running") return "Running…";
  if (call.state === "pending") return "Not run";
  if (call.error === "disallowed") return "Denied";
  if (call.error === "stopped") return "Stopped";
  if (call.error) return "Failed";
  return ""; // done: the card needs no tag
}

/**
 * One call, folded as Jan folds it: its name (and server) and state; open it for the arguments
 * and the result. `call`: {id, name, server, args, result, state, error}.
 */
export function toolCard(call, { waiting = false } = {}) {
  const state = stateText(call, waiting);
  const result = call.result ?? (call.state === "running" ? "…" : "(not run)");
  const where = call.server ? h("span.tool-server", {}, ` · ${call.server}`) : null;
  const tag = state ? h(`span.tag${call.error && call.error !== "stopped" ? ".warn" : ""}`, {}, state) : null;
  return h("details.tool-call", { "data-call": call.id ?? "" },
    h("summary", {}, "Tool call: ", h("code", {}, call.name), where, tag ? " " : null, tag),
    h("div.tool-label", {}, "Arguments"), h("pre.tool-args", {}, pretty(call.args ?? "{}")),
    h("div.tool-label", {}, "Result"), h("pre.tool-result", {}, result));
}

/**
 * The question before a call runs: the tool, its server and arguments, and the four choices
 * (a tool's result is text from elsewhere that can try to steer the model).
 */
export function approvalCard(call, decide) {
  const buttons = DECISIONS.map(([value, text]) => h(`button.button${value === "once" ? ".primary" : ""}`, {
    type: "button",
    "data-decision": value,
    onclick: (event) => {
      event.currentTarget.closest(".approval").querySelectorAll("button").forEach((b) => (b.disabled = true));
      decide(value);
    },
  }, text));
  return h("div.approval", { role: "group", "aria-label": `Run ${call.name}?` },
    h("p.approval-title", {}, "Run ", h("code", {}, call.name), call.server ? ` from ${call.server}` : "", "?"),
    h("pre.tool-args", {}, pretty(call.args ?? "{}")),
    h("p.hint", {}, "A tool's result can try to steer the model: allow only what you expect."),
    h("div.approval-actions", {}, buttons));
}

/** The calls of an answer being written, drawn as the run's `tool_call`/`tool_result` events come. */
export class LiveCalls {
  constructor(saved = []) {
    this.box = h("div.tool-calls");
    this.calls = saved.map((c) => ({ ...c }));
    this.draw();
  }

  update(event, data) {
    const call = { id: data.id, name: data.name, server: data.server, args: data.arguments };
    if (event === "tool_call") call.state = data.state === "running" ? "running" : "pending";
    else {
      call.state = "completed";
      call.result = (data.response?.content ?? []).map((p) => p?.text ?? "").join("\n");
      call.error = data.response?.error || "";
    }
    const at = this.calls.findIndex((c) => c.id === call.id);
    if (at < 0) this.calls.push(call);
    else this.calls[at] = { ...this.calls[at], ...call };
    this.draw();
  }

  draw() {
    this.box.replaceChildren(...this.calls.map((c) => toolCard(c, { waiting: c.state === "pending" })));
  }
}

/** Whether the user asked to forget the conversation's approvals (`mcp_approved`). */
export function forgetApprovals() {
  const row = document.getElementById("set-tools-forget-row");
  return !row.hidden && document.getElementById("set-tools-forget").checked;
}

/** The conversation's `metadata.mcp` edited in its settings: servers on, tools off, first turn. */
export class ToolPicker {
  constructor() {
    this.list = document.getElementById("set-tools-list");
    this.choice = document.getElementById("set-tool-choice");
    this.rows = [];
    this.loaded = false;
  }

  /** `approved`: the conversation's `metadata.mcp_approved` (tools it runs without asking). */
  async show(setting, approved = null) {
    this.loaded = false;
    const allowed = (Array.isArray(approved) ? approved : []).filter((a) => typeof a?.tool === "string");
    const forget = document.getElementById("set-tools-forget");
    forget.checked = false;
    document.getElementById("set-tools-forget-row").hidden = !allowed.length;
    document.getElementById("set-tools-forget-text").textContent =
      `Ask again for the tools allowed in this conversation (${allowed.map((a) => `${a.tool} from ${a.server}`).join(", ")})`;
    const on = new Map();
    for (const entry of Array.isArray(setting?.servers) ? setting.servers : []) {
      const name = typeof entry === "string" ? entry : entry?.name;
      if (typeof name === "string") on.set(name, new Set(Array.isArray(entry?.tools_off) ? entry.tools_off : []));
    }
    this.choice.value = setting?.tool_choice === "required" ? "required" : "auto";
    this.list.replaceChildren(h("p.hint", {}, "Loading the MCP servers…"));
    let servers = [];
    try {
      servers = (await api("/v1/mcp/servers")).data ?? [];
    } catch (error) {
      this.list.replaceChildren(h("p.hint", {}, `Could not list the MCP servers: ${error.message}`));
      return;
    }
    this.loaded = true;
    for (const name of on.keys()) {
      if (!servers.some((s) => s.name === name)) servers.push({ name, tools: [], last_error: "not configured" });
    }
    this.rows = servers.map((server) => this.row(server, on.get(server.name)));
    if (!this.rows.length) {
      this.list.replaceChildren(h("p.hint", {}, "No MCP servers are configured: add them to mcp.json in Hearth's home (the mcpServers format of Claude Desktop, Cursor and Jan)."));
      return;
    }
    this.list.replaceChildren(...this.rows.map((r) => r.el));
  }

  row(server, off) {
    const id = `tool-server-${server.name.replace(/[^\w-]/g, "_")}`;
    const box = h("input", { type: "checkbox", id, "data-server": server.name, checked: Boolean(off) });
    const tools = (server.tools ?? []).map((tool) => {
      const input = h("input", { type: "checkbox", "data-tool": tool.name, checked: !off?.has(tool.name) });
      return { name: tool.name, input, el: h("label.tool-option", { title: tool.description ?? "" }, input, " ", tool.name) };
    });
    const sync = () => tools.forEach((t) => (t.input.disabled = !box.checked));
    box.addEventListener("change", sync);
    sync();
    const note = server.last_error ? h("span.hint", {}, ` (${server.last_error})`) : null;
    const el = h("div.tool-server-row", {},
      h("label.tool-server-name", { for: id }, box, " ", server.name, note),
      h("div.tool-options", {}, tools.map((t) => t.el)));
    return { name: server.name, box, tools, el };
  }

  /** The setting to save: null when no server is on (the conversation has no tools);
   * undefined while the list has not loaded (the setting is left as it is). */
  value() {
    if (!this.loaded) return undefined;
    const servers = this.rows.filter((r) => r.box.checked).map((r) => {
      const off = r.tools.filter((t) => !t.input.checked).map((t) => t.name);
      return off.length ? { name: r.name, tools_off: off } : { name: r.name };
    });
    if (!servers.length) return null;
    return { servers, tool_choice: this.choice.value === "required" ? "required" : "auto" };
  }
}
