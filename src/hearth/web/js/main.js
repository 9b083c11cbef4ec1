// Start-up: the views, the routes (#/, #/t/<thread id>, #/models), the theme, the API key.

import { api, setKeyPrompt, storedKey } from "./api.js";
import { Chat } from "./chat.js";
import { markdownReady } from "./messages.js";
import { Sidebar } from "./sidebar.js";
import { applyIcons, icon, loadPart } from "./ui.js";

const THEME_STORE = "hearth.theme";
const $ = (id) => document.getElementById(id);

/** Shared state: the model list, refreshed by whoever needs it fresh. */
const store = {
  models: [],
  running: [],
  async refreshModels() {
    const body = await api("/v1/models");
    store.models = body.data;
    chat?.updatePicker();
    return store.models;
  },
};

let chat = null;

/**
 * The Models view, loaded the first time it is shown: its modules (and the model editor's)
 * are not compiled before the first chat view, which keeps a cold load short.
 */
function lazyModels() {
  let view = null;
  return {
    async show() {
      if (!view) {
        const loaded = await loadPart(() => import("./models.js")).catch(() => null);
        if (!loaded) return; // loadPart has said why, and to reload
        view = new loaded.ModelsView(store);
      }
      view.show();
    },
    hide() {
      view?.hide();
    },
  };
}

function askForKey(wasWrong) {
  const dialog = $("key-dialog");
  $("key-error").hidden = !wasWrong;
  $("key-input").value = "";
  $("key-button").hidden = false;
  if (!dialog.open) dialog.showModal();
  return new Promise((resolve) => {
    $("key-form").addEventListener("submit", () => resolve($("key-input").value.trim()), { once: true });
  });
}

function setupTheme() {
  const button = $("theme-toggle");
  const system = matchMedia("(prefers-color-scheme: dark)");
  const current = () => localStorage.getItem(THEME_STORE) || (system.matches ? "dark" : "light");
  const apply = () => {
    const theme = localStorage.getItem(THEME_STORE);
    if (theme) document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    const next = current() === "dark" ? "light" : "dark";
    button.setAttribute("aria-label", `Switch to ${next} theme`);
    button.title = `Switch to ${next} theme`;
    button.replaceChildren(icon(next === "dark" ? "moon" : "sun"));
  };
  button.addEventListener("click", () => {
    localStorage.setItem(THEME_STORE, current() === "dark" ? "light" : "dark");
    apply();
  });
  system.addEventListener("change", apply);
  apply();
}

function setupDrawer() {
  const app = $("app");
  const open = (yes) => {
    app.classList.toggle("sidebar-open", yes);
    $("scrim").hidden = !yes;
    for (const b of document.querySelectorAll(".menu-button")) b.setAttribute("aria-expanded", String(yes));
    if (yes) $("thread-search").focus();
    else if ($("sidebar").contains(document.activeElement)) {
      [...document.querySelectorAll(".menu-button")].find((b) => b.offsetParent)?.focus();
    }
  };
  for (const b of document.querySelectorAll(".menu-button")) b.addEventListener("click", () => open(true));
  $("sidebar-close").addEventListener("click", () => open(false));
  $("scrim").addEventListener("click", () => open(false));
  document.addEventListener("keydown", (e) => e.key === "Escape" && app.classList.contains("sidebar-open") && open(false));
  return () => open(false);
}

async function route(models, closeDrawer) {
  const hash = location.hash || "#/";
  closeDrawer();
  const onModels = hash.startsWith("#/models");
  $("chat-view").hidden = onModels;
  $("models-view").hidden = !onModels;
  $("models-link").toggleAttribute("aria-current", onModels);
  if (onModels) {
    $("models-link").setAttribute("aria-current", "page");
    document.title = "Models · Hearth";
    await models.show();
    return;
  }
  models.hide();
  const match = hash.match(/^#\/t\/(.+)$/);
  let threadId = null;
  try {
    threadId = match ? decodeURIComponent(match[1]) : null;
  } catch {
    location.hash = "#/"; // a malformed link: start a new chat instead of failing
    return;
  }
  chat.sidebar.setActive(threadId);
  if (threadId !== chat.thread?.id || !threadId) await chat.open(threadId);
  $("composer-input").focus();
}

async function boot() {
  applyIcons();
  setupTheme();
  setKeyPrompt(askForKey);
  if (storedKey()) $("key-button").hidden = false;
  $("key-button").addEventListener("click", () => askForKey(false).then((key) => {
    localStorage.setItem("hearth.apiKey", key);
    location.reload();
  }));
  const sidebar = new Sidebar({ onDeleted: (id) => chat.thread?.id === id && (location.hash = "#/") });
  chat = new Chat(store, sidebar);
  const models = lazyModels();
  const closeDrawer = setupDrawer();
  $("new-chat").addEventListener("click", () => {
    if (location.hash === "#/" || location.hash === "") chat.open(null).then(() => $("composer-input").focus());
    location.hash = "#/";
  });
  window.addEventListener("hashchange", () => route(models, closeDrawer));
  setInterval(() => !document.hidden && store.refreshModels().catch(() => {}), 5000);
  window.addEventListener("focus", () => store.refreshModels().catch(() => {}));
  await Promise.all([store.refreshModels().catch(() => {}), sidebar.refresh()]);
  await route(models, closeDrawer);
  document.documentElement.dataset.ready = "true";
  performance.mark("hearth:interactive");
  (window.requestIdleCallback ?? setTimeout)(() => markdownReady.then((md) => md.loadHighlighter()));
}

boot();
