// Markdown for answers: marked -> DOMPurify -> highlight.js, and a streaming view that appends.
//
// Model output is a stranger's data. HTML written in an answer is shown as text, never parsed
// (Chromium even reports an inline handler such as onerror= while parsing into an inert
// document). What marked makes of the Markdown then goes through DOMPurify before it touches
// the page, with images, forms, styles and embeds forbidden (the page's CSP would refuse them
// anyway), and links open in a new tab without a referrer.

import { DOMPurify, loadHighlight, marked } from "./vendor.js";
import { copyText, h, icon, loadPart } from "./ui.js";

const PURIFY = {
  FORBID_TAGS: ["style", "img", "form", "input", "button", "textarea", "select", "option",
    "iframe", "frame", "object", "embed", "video", "audio", "source", "picture", "svg", "math",
    "link", "meta", "base", "dialog", "template"],
  FORBID_ATTR: ["style", "srcset", "id", "name", "class", "formaction", "action"],
  ADD_ATTR: ["data-lang"], // the fence's language (classes are dropped)
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

marked.use({
  gfm: true,
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text.trim())}</p>\n` : escapeHtml(text);
    },
    // An image in an answer becomes a link: the page loads nothing from elsewhere.
    image({ href, text }) {
      const label = escapeHtml(text || href || "image");
      return href ? `<a href="${escapeHtml(href)}">[image: ${label}]</a>` : `[image: ${label}]`;
    },
    code({ text, lang }) {
      const name = (lang || "").trim().split(/\s+/)[0].replace(/[^\w+#.-]/g, "").slice(0, 30);
      return `<pre><code data-lang="${escapeHtml(name)}">${escapeHtml(text)}</code></pre>\n`;
    },
  },
});
let hljs = null;
let highlighter = null;

/** Load highlight.js once (main.js starts it when the page is idle after start-up). */
export function loadHighlighter() {
  highlighter ??= loadPart(loadHighlight).then(
    (loaded) => {
      hljs = loaded;
      hljs.configure({ ignoreUnescapedHTML: true });
      return hljs;
    },
    () => (highlighter = null), // code stays plain; a later call (after a reload) tries again
  );
  return highlighter;
}
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Markdown text -> a sanitised DocumentFragment (code blocks wrapped, highlighted if asked). */
export function renderMarkdown(text, { highlight = true } = {}) {
  const html = marked.parse(text, { async: false });
  const fragment = DOMPurify.sanitize(html, PURIFY);
  for (const code of fragment.querySelectorAll("pre > code")) decorateCode(code, highlight);
  return fragment;
}

function decorateCode(code, highlight) {
  const pre = code.parentElement;
  const lang = code.dataset.lang || "";
  const copy = h("button.button.small.copy", { type: "button", "aria-label": "Copy the code" }, icon("copy"), "Copy");
  copy.addEventListener("click", async () => {
    await copyText(code.textContent);
    copy.replaceChildren(icon("check"), "Copied");
    setTimeout(() => copy.replaceChildren(icon("copy"), "Copy"), 1500);
  });
  const head = h("div.code-head", {}, h("span.lang", {}, lang || "code"), copy);
  const block = h("div.codeblock", {}, head);
  pre.replaceWith(block);
  block.append(pre);
  if (highlight && code.textContent.length < 100_000) {
    if (hljs) paint(code, lang, head);
    else loadHighlighter().then((loaded) => loaded && paint(code, lang, head));
  }
}

function paint(code, lang, head) {
  const result = lang && hljs.getLanguage(lang)
    ? hljs.highlight(code.textContent, { language: lang, ignoreIllegals: true })
    : hljs.highlightAuto(code.textContent);
  code.innerHTML = result.value; // highlight.js escapes the text it wraps
  code.classList.add("hljs");
  head.firstChild.textContent = lang || result.language || "code";
}

/**
 * An answer as it streams. Text is appended; once a block is complete (a blank line outside a
 * code fence) it is rendered once and kept, so each frame re-renders only the unfinished tail.
 * At most one render per animation frame, however fast tokens come.
 */
export class StreamView {
  constructor(container) {
    this.container = container;
    this.done = h("div.done");
    this.tail = h("div.tail");
    this.container.replaceChildren(this.done, this.tail);
    this.container.classList.add("cursor");
    this.text = "";
    this.committed = 0;
    this.scheduled = false;
    this.onPaint = null; // called once after the first text is painted
  }

  append(delta) {
    this.text += delta;
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.frame());
    }
  }

  frame() {
    this.scheduled = false;
    const boundary = this.boundary();
    if (boundary > this.committed) {
      this.done.append(renderMarkdown(this.text.slice(this.committed, boundary)));
      this.committed = boundary;
    }
    this.tail.replaceChildren(renderMarkdown(this.text.slice(this.committed), { highlight: false }));
    if (this.onPaint && this.text) {
      const notify = this.onPaint;
      this.onPaint = null;
      setTimeout(notify, 0); // runs after this frame is painted
    }
  }

  /** The end of the last complete block: a blank line that is not inside a code fence. */
  boundary() {
    let inFence = false;
    let last = this.committed;
    let pos = this.committed;
    const text = this.text;
    while (pos < text.length) {
      const end = text.indexOf("\n", pos);
      if (end < 0) break;
      const line = text.slice(pos, end);
      if (/^\s{0,3}(```|~~~)/.test(line)) inFence = !inFence;
      else if (!inFence && line.trim() === "" && end > this.committed) last = end + 1;
      pos = end + 1;
    }
    return last;
  }

  /** The whole answer, rendered once more as one document (lists and links across blocks). */
  finish(text = this.text) {
    this.text = text;
    this.container.classList.remove("cursor");
    this.container.replaceChildren(renderMarkdown(text));
  }
}
