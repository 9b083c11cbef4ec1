// One message on the page: a user's bubble (text and images) or an answer (Markdown), with its
// figures (tokens/s, time to first token) and actions (copy, edit and resend, regenerate).

import { approvalCard, toolCard } from "./tools.js";
import { copyText, h, iconButton, loadPart } from "./ui.js";

let markdown = null;
/** The Markdown modules (marked and DOMPurify, the page's largest) are evaluated while the
 * first API calls are on their way, not before them; render once this has resolved. */
export const markdownReady = loadPart(() => import("./markdown.js")).then((module) => (markdown = module));
markdownReady.catch(() => {}); // loadPart has told the user; not an unhandled rejection too

function partsText(message, type) {
  const content = message.content;
  if (typeof content === "string") return type === "text" ? content : "";
  return (Array.isArray(content) ? content : [])
    .map((part) => (part?.type === type ? part.text?.value ?? part.text ?? "" : ""))
    .filter((t) => typeof t === "string" && t)
    .join("\n");
}

/** Today's Jan keeps an answer's reasoning inline, first: "<think>…</think>answer". An
 * unclosed <think> (an answer stopped while thinking) is all reasoning. */
export function splitThink(text) {
  const closed = /^\s*<think>([\s\S]*?)<\/think>\s*/.exec(text);
  if (closed) return { reasoning: closed[1].trim(), text: text.slice(closed[0].length) };
  const open = /^\s*<think>/.exec(text);
  if (open) return { reasoning: text.slice(open[0].length).trim(), text: "" };
  return { reasoning: "", text };
}

/** The text of a message's content parts (a plain string is also seen in Jan's files); an
 * answer's inline reasoning is not part of it (see reasoningOf). */
export function textOf(message) {
  const text = partsText(message, "text");
  return message.role === "assistant" ? splitThink(text).text : text;
}

/** An answer's reasoning: Jan's older `reasoning` parts and today's inline <think>. */
export function reasoningOf(message) {
  const inline = message.role === "assistant" ? splitThink(partsText(message, "text")).reasoning : "";
  return [partsText(message, "reasoning"), inline].filter(Boolean).join("\n\n");
}

function pretty(value) {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}

/** A tool's result as text: Jan's ToolResult {content: [{text}], error}, a string, or JSON. */
function resultText(response) {
  if (response === undefined || response === null) return null;
  if (typeof response === "string") return response;
  const texts = Array.isArray(response.content) ? response.content.map((p) => p?.text).filter((t) => typeof t === "string") : [];
  if (texts.length) return texts.join("\n");
  if (typeof response.error === "string" && response.error) return `Tool execution failed: ${response.error}`;
  return pretty(response);
}

/** The tool calls of a message: today's Jan's metadata.tool_calls, older `tool_call` parts. */
export function toolCallsOf(message) {
  const listed = Array.isArray(message.metadata?.tool_calls) ? message.metadata.tool_calls : [];
  const calls = listed
    .filter((c) => typeof c?.tool?.function?.name === "string")
    .map((c) => ({
      id: c.tool.id ?? c.id,
      name: c.tool.function.name,
      server: c.mcp?.server,
      args: pretty(c.tool.function.arguments),
      result: resultText(c.response),
      state: c.state,
      error: typeof c.response?.error === "string" ? c.response.error : "",
    }));
  const parts = Array.isArray(message.content) ? message.content : [];
  for (const p of parts) {
    if (p?.type === "tool_call" && typeof p.tool_name === "string") {
      calls.push({ name: p.tool_name, args: pretty(p.input), result: resultText(p.output), state: null });
    }
  }
  return calls;
}

function reasoningElement(text) {
  return h("details.reasoning", {}, h("summary", {}, "Reasoning"), h("div.reasoning-text", {}, text));
}

export function imagesOf(message) {
  const content = Array.isArray(message.content) ? message.content : [];
  return content
    .filter((part) => part?.type === "image_url" && typeof part.image_url?.url === "string")
    .map((part) => part.image_url.url)
    .filter((url) => url.startsWith("data:image/"));
}

/** "42.1 tokens/s · first token 180 ms · 96 tokens" from llama.cpp's timings. */
export function figures(metadata = {}) {
  const out = [];
  const timings = metadata.timings ?? {};
  const usage = metadata.usage ?? {};
  const speed = timings.predicted_per_second;
  if (Number.isFinite(speed)) out.push(`${speed.toFixed(1)} tokens/s`);
  const ttft = metadata.ttft_ms ?? timings.prompt_ms;
  if (Number.isFinite(ttft)) out.push(`first token ${ttft < 1000 ? `${Math.round(ttft)} ms` : `${(ttft / 1000).toFixed(2)} s`}`);
  const tokens = usage.completion_tokens ?? timings.predicted_n;
  if (Number.isFinite(tokens)) out.push(`${tokens} tokens`);
  return out;
}

function statusTag(message) {
  if (message.status === "stopped") return h("span.tag.warn", {}, "Stopped");
  if (message.status === "pending") return h("span.tag", {}, "Unfinished");
  if (message.status === "error") return h("span.tag.error", {}, "Error");
  return null;
}

function errorText(message) {
  const meta = message.metadata ?? {};
  return message.error ?? meta.error?.message ?? meta.error ?? message.error_code ?? "The answer failed.";
}

/** The element of one message. `actions`: {edit(message, newText), regenerate(message)}. */
export function messageElement(message, actions) {
  if (message.role === "user") return userElement(message, actions);
  return assistantElement(message, actions);
}

function userElement(message, actions) {
  const text = textOf(message);
  const images = imagesOf(message);
  const el = h("article.message.user", { "data-id": message.id, "aria-label": "You said" });
  if (images.length) {
    el.append(h("div.images", {}, images.map((src) => h("img", { src, alt: "Attached image" }))));
  }
  const bubble = h("div.bubble", {}, text);
  const tools = h("div.tools", {},
    iconButton("copy", "Copy the message", () => copyText(text)),
    iconButton("edit", "Edit and resend", () => startEdit(el, message, text, actions)));
  el.append(bubble, h("div.meta", {}, tools));
  return el;
}

function startEdit(el, message, text, actions) {
  if (el.classList.contains("editing")) return;
  el.classList.add("editing");
  const area = h("textarea", { "aria-label": "Edit your message", rows: String(Math.min(12, text.split("\n").length + 1)) });
  area.value = text;
  const cancel = () => {
    box.remove();
    el.classList.remove("editing");
    el.querySelector(".meta")?.removeAttribute("hidden");
  };
  const save = () => {
    const value = area.value.trim();
    if (!value) return;
    cancel();
    actions.edit(message, value);
  };
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      save();
    }
    if (event.key === "Escape") cancel();
  });
  const box = h("div.edit-box", {}, area, h("div.row", {},
    h("button.button", { type: "button", onclick: cancel }, "Cancel"),
    h("button.button.primary", { type: "button", onclick: save }, "Save and resend")));
  el.querySelector(".meta")?.setAttribute("hidden", "");
  el.append(box);
  area.focus();
}

function assistantElement(message, actions) {
  const el = h("article.message.assistant", { "data-id": message.id, "aria-label": "Answer" });
  const content = h("div.content");
  const text = textOf(message);
  const reasoning = reasoningOf(message);
  if (reasoning) el.append(reasoningElement(reasoning)); // folded, as Jan folds it
  const awaiting = message.metadata?.awaiting_approval;
  for (const call of toolCallsOf(message)) {
    const waiting = Boolean(awaiting && call.id === awaiting.call_id && call.state === "pending");
    el.append(toolCard(call, { waiting }));
    if (waiting && actions.decide) el.append(approvalCard(call, (decision) => actions.decide(message, call.id, decision)));
  }
  if (text) content.append(markdown.renderMarkdown(text));
  const dropped = Number(message.metadata?.context_dropped) || 0;
  if (dropped > 0) {
    const what = dropped === 1 ? "1 earlier message was" : `${dropped} earlier messages were`;
    el.append(h("p.context-note", { role: "note" }, `${what} left out of what the model saw: the conversation is longer than its context.`));
  }
  el.append(content, metaFor(message, actions));
  if (message.status === "error") el.insertBefore(h("div.error-box", { role: "alert" }, errorText(message)), el.lastChild);
  return el;
}

/** The line under an answer: status, figures, copy and regenerate. */
export function metaFor(message, actions) {
  const meta = h("div.meta");
  const tag = statusTag(message);
  if (tag) meta.append(tag);
  const numbers = figures(message.metadata);
  if (numbers.length) meta.append(h("span.figures", {}, numbers.join(" · ")));
  if (message.status !== "pending") {
    meta.append(h("div.tools", {},
      iconButton("copy", "Copy the answer", () => copyText(textOf(message))),
      iconButton("retry", "Regenerate the answer", () => actions.regenerate(message))));
  }
  return meta;
}

/** A placeholder while the model has said nothing yet. */
export function thinkingDots() {
  return h("div.thinking", { "aria-label": "Waiting for the answer" }, h("span"), h("span"), h("span"));
}
