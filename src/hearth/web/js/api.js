// The page talks to Hearth through its public API only, like any other client.
// The API key (when the server has one) is asked for once and kept in localStorage.

const KEY_STORE = "hearth.apiKey";
let askKey = null; // set by main.js: () => Promise<string> resolving to a key the user typed
let pendingAsk = null;

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setKeyPrompt(prompt) {
  askKey = prompt;
}

export function storedKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

function headers(extra) {
  const out = { ...extra };
  const key = storedKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    const error = body.error ?? body.detail;
    if (typeof error === "string") message = error;
    else if (error?.message) ({ message, code } = error);
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, message, code);
}

/**
 * The answer early.js already asked for, once: a plain GET of the same path with the same key.
 * Later calls (and any other request) go to the network.
 */
async function early(path, init) {
  const pending = globalThis.hearthEarly?.get(path);
  if (!pending || (init.method ?? "GET") !== "GET" || init.body !== undefined) return null;
  globalThis.hearthEarly.delete(path);
  return pending;
}

/** fetch() with the key; a 401 asks for the key (once for all callers) and retries. */
export async function raw(path, init = {}, retried = false) {
  const response =
    (!retried && (await early(path, init))) || (await fetch(path, { ...init, headers: headers(init.headers) }));
  if (response.status === 401 && askKey && !retried) {
    pendingAsk ??= askKey(Boolean(storedKey())).finally(() => (pendingAsk = null));
    saveKey(await pendingAsk);
    return raw(path, init, true);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** JSON in, JSON out. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const response = await raw(path, init);
  if (response.status === 204) return null;
  return response.json();
}

/**
 * Read a server-sent event stream from a fetch Response: calls onEvent(data, event) for each
 * event whose data is not "[DONE]", and onComment(text) for each comment line (Hearth's
 * keep-alives, and `prompt <read>/<total>` while the engine reads the prompt). Lines are split
 * as bytes arrive, so a token is handed on as soon as its line is complete.
 */
export async function readEvents(response, onEvent, onComment = null) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/\r$/, "");
      buffer = buffer.slice(cut + 1);
      if (line === "") {
        const text = data.join("\n");
        if (data.length && text !== "[DONE]") onEvent(text, event);
        event = "message";
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      } else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith(":") && onComment) {
        onComment(line.slice(1).trim());
      }
    }
  }
}

export const enc = encodeURIComponent;
