// Small DOM helpers shared by the views: element builder, icons, formatting, toasts, dialogs.

const ICONS = {
  plus: '<path d="M12 5v14M5 12h14"/>',
  close: '<path d="M6 6l12 12M18 6L6 18"/>',
  menu: '<path d="M4 7h16M4 12h16M4 17h16"/>',
  send: '<path d="M12 19V5M6 11l6-6 6 6"/>',
  stop: '<rect x="7" y="7" width="10" height="10" rx="2" fill="currentColor" stroke="none"/>',
  image: '<rect x="3" y="5" width="18" height="14" rx="2"/><circle cx="9" cy="10" r="1.6"/><path d="M21 16l-5-5-8 8"/>',
  sliders: '<path d="M4 7h10M18 7h2M4 17h4M12 17h8"/><circle cx="16" cy="7" r="2"/><circle cx="10" cy="17" r="2"/>',
  download: '<path d="M12 4v11M7 10l5 5 5-5M5 20h14"/>',
  upload: '<path d="M12 20V9M7 14l5-5 5 5M5 4h14"/>',
  box: '<path d="M21 8l-9-5-9 5 9 5 9-5zM3 8v8l9 5 9-5V8M12 13v8"/>',
  moon: '<path d="M20 14.5A8 8 0 0 1 9.5 4a8 8 0 1 0 10.5 10.5z"/>',
  sun: '<circle cx="12" cy="12" r="4"/><path d="M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4"/>',
  key: '<circle cx="8" cy="15" r="4"/><path d="M11 12l9-9M16 7l3 3"/>',
  chat: '<path d="M4 5h16v11H9l-5 4V5z"/>',
  copy: '<rect x="9" y="9" width="11" height="11" rx="2"/><path d="M5 15V5a1 1 0 0 1 1-1h9"/>',
  check: '<path d="M5 12l5 5 9-10"/>',
  edit: '<path d="M4 20h4L19 9l-4-4L4 16v4z"/>',
  retry: '<path d="M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
  pencil: '<path d="M4 20h4L19 9l-4-4L4 16v4z"/>',
};

/** An inline SVG icon (the markup is ours, never data). */
export function icon(name) {
  const span = document.createElement("span");
  span.innerHTML =
    `<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" ` +
    `stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name] ?? ""}</svg>`;
  return span.firstChild;
}

/** Give every [data-icon] element its icon, before any text it has. */
export function applyIcons(root = document) {
  for (const el of root.querySelectorAll("[data-icon]")) {
    el.querySelector("svg.icon")?.remove();
    el.prepend(icon(el.dataset.icon));
  }
}

/** h("div.class", {attrs}, ...children): text children are text nodes, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "icon") el.prepend(icon(value));
    else if (key === "text") el.textContent = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function iconButton(name, label, onclick, extra = {}) {
  return h("button.icon-button", { type: "button", "aria-label": label, title: label, icon: name, onclick, ...extra });
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Unix time (seconds or milliseconds, as Jan wrote either) as "5 min ago". */
export function ago(when) {
  if (!when) return "";
  const ms = when > 1e12 ? when : when * 1000;
  const diff = (Date.now() - ms) / 1000;
  if (diff < 60) return "just now";
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  if (diff < 7 * 86400) return `${Math.floor(diff / 86400)} d ago`;
  return new Date(ms).toLocaleDateString();
}

export function toast(message, { error = false, timeout = 5000 } = {}) {
  const el = h("div.toast", { role: error ? "alert" : undefined }, message);
  if (error) el.classList.add("error");
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), timeout);
}

/**
 * A part of the page loaded when first needed (a chunk of the bundle). Chunk names carry a
 * hash of their content, so a page left open while Hearth was upgraded asks for a file that is
 * gone (or a stopped Hearth answers nothing): say so, with the fix, rather than fail silently.
 */
export function loadPart(load) {
  return load().catch((error) => {
    toast("Part of this page could not be loaded: Hearth was updated or stopped since the page was opened. Reload the page.", {
      error: true,
      timeout: 15000,
    });
    throw error;
  });
}

/** A modal yes/no question; resolves true for yes. */
export function confirmDialog(title, text, okLabel = "Delete") {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector("#confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  dialog.querySelector('[value="cancel"]').focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Copy text, also where the async clipboard is unavailable. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

/** What a model can do: the record's `capabilities`, else derived as Hearth's capabilities.py does. */
export function capabilitiesOf(model) {
  if (Array.isArray(model.capabilities)) return model.capabilities.map(String);
  const params = model.engine_parameters ?? {};
  const meta = model.metadata ?? {};
  const arch = String(meta.architecture ?? "").toLowerCase();
  const embedOnly = /bert|t5encoder|gte|xlm-roberta/.test(arch);
  const template = String(meta.chat_template ?? "");
  const caps = [];
  if (model.format === "api") return ["completion", "remote"];
  if (!embedOnly) caps.push("completion");
  if (embedOnly || [true, "true", 1, "1"].includes(params.embedding)) caps.push("embedding");
  if (typeof params.mmproj === "string" && params.mmproj) caps.push("vision");
  if (!embedOnly && /\btools\b|tool_call/.test(template)) caps.push("tools");
  if (!embedOnly && /<think>|enable_thinking|reasoning_content|\bthinking\b/.test(template)) caps.push("thinking");
  return caps;
}

/** Quantization from the GGUF header, else guessed from the file name (Q4_K_M, F16...). */
export function quantizationOf(model) {
  const known = model.metadata?.quantization;
  if (known) return String(known);
  const names = [...(model.sources ?? []).map((s) => s.filename ?? ""), model.id ?? ""].join(" ");
  const match = names.match(/(?:^|[^A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|F32|BF16)(?![A-Za-z0-9])/i);
  return match ? match[1].toUpperCase() : null;
}

export function contextOf(model) {
  const ctx = model.engine_parameters?.ctx_len ?? model.metadata?.context_length;
  return ctx ? Number(ctx) : null;
}

export const STATUS_TEXT = {
  ready: "Ready",
  running: "Loaded",
  starting: "Loading",
  downloading: "Downloading",
  missing: "Files missing",
  failed: "Failed",
  invalid: "Invalid",
};

/** A file's text to copy: its path above, a Copy button (`label` names it for screen readers). */
export function fileBlock(label, path, text) {
  const copy = h("button.button.small.copy", { type: "button", "aria-label": `Copy ${label}` }, icon("copy"), "Copy");
  copy.addEventListener("click", async () => {
    await copyText(text);
    copy.replaceChildren(icon("check"), "Copied");
    setTimeout(() => copy.replaceChildren(icon("copy"), "Copy"), 1500);
  });
  return h("div.codeblock", {},
    h("div.code-head", {}, h("span.lang", { title: path }, path), copy),
    h("pre", {}, h("code", {}, text)));
}
