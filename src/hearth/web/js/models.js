// The Models view: every model with its status and facts, pulls with live progress, imports,
// loaded models, and a model's parameters (a form, or its model.json as JSON).

import { api, enc, raw, readEvents } from "./api.js";
import { janProvidersSection } from "./jan-providers.js";
import { mcpServersSection } from "./mcp-servers.js";
import { openEditor } from "./model-editor.js";
import {
  STATUS_TEXT, ago, capabilitiesOf, confirmDialog, contextOf, formatBytes, formatDuration, h,
  quantizationOf, toast,
} from "./ui.js";

const REFRESH_MS = 2000;
// Fields of a model record that Hearth computes; they are not model.json's to edit.
const COMPUTED = ["object", "size", "status", "error", "id"];

/** Replace only the children whose signature changed (focus and scroll survive a refresh). */
function reconcile(container, items, { key, signature, build }) {
  const old = new Map([...container.children].map((el) => [el.dataset.key, el]));
  const wanted = items.map((item) => {
    const k = String(key(item));
    const sig = signature(item);
    const existing = old.get(k);
    if (existing && existing.dataset.sig === sig) return existing;
    const el = build(item);
    el.dataset.key = k;
    el.dataset.sig = sig;
    if (existing?.contains(document.activeElement)) queueMicrotask(() => el.querySelector("button")?.focus());
    return el;
  });
  wanted.forEach((el, index) => {
    if (container.children[index] !== el) container.insertBefore(el, container.children[index] ?? null);
  });
  while (container.children.length > wanted.length) container.lastChild.remove();
}

export class ModelsView {
  constructor(store) {
    this.store = store;
    this.body = document.getElementById("models-body");
    this.following = new Map(); // job id -> latest snapshot from its event stream
    this.jobs = [];
    this.timer = null;
    this.build();
  }

  build() {
    this.runningList = h("div.model-list");
    this.downloadList = h("div.model-list");
    this.modelList = h("div.model-list");
    this.runningCount = h("span.count");
    this.modelCount = h("span.count");
    this.janProviders = janProvidersSection();
    this.mcp = mcpServersSection();
    this.body.replaceChildren(
      h("section", { "aria-labelledby": "add-title" }, h("h2", { id: "add-title" }, "Add a model"),
        h("div.add-forms", {}, this.pullForm(), this.importForm())),
      this.downloadSection = h("section", { "aria-labelledby": "dl-title", hidden: true },
        h("h2", { id: "dl-title" }, "Downloads"), this.downloadList),
      h("section", { "aria-labelledby": "run-title" },
        h("h2", { id: "run-title" }, "Loaded", this.runningCount), this.runningList),
      h("section", { "aria-labelledby": "all-title" },
        h("h2", { id: "all-title" }, "All models", this.modelCount), this.modelList),
      this.mcp.section,
      this.janProviders.section);
  }

  pullForm() {
    const source = h("input", { type: "text", id: "pull-source", required: true, autocomplete: "off",
      placeholder: "https://…/x.gguf or OWNER/REPO:Q4_K_M" });
    const id = h("input", { type: "text", id: "pull-id", autocomplete: "off", placeholder: "from the file name" });
    const form = h("form.card", { "aria-labelledby": "pull-title" },
      h("h3", { id: "pull-title" }, "Download"),
      h("label", { for: "pull-source" }, "URL or Hugging Face reference"), source,
      h("div.row", {}, h("div", {}, h("label", { for: "pull-id" }, "Model id (optional)"), id),
        h("button.button.primary", { type: "submit", icon: "download" }, "Download")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { source: source.value.trim() };
        if (id.value.trim()) body.id = id.value.trim();
        const job = await api("/v1/models/pull", { method: "POST", body });
        source.value = "";
        id.value = "";
        if (job.id) this.follow(job);
        else toast(`${job.model_id} is already complete.`);
        this.refresh();
      } catch (error) {
        toast(`Could not download: ${error.message}`, { error: true });
      }
    });
    return form;
  }

  importForm() {
    const path = h("input", { type: "text", id: "import-path", required: true, autocomplete: "off",
      placeholder: "/path/to/model.gguf" });
    const id = h("input", { type: "text", id: "import-id", autocomplete: "off", placeholder: "from the file name" });
    const mode = h("select", { id: "import-mode" }, h("option", { value: "copy" }, "Copy"),
      h("option", { value: "move" }, "Move"), h("option", { value: "link" }, "Link (leave it where it is)"));
    const form = h("form.card", { "aria-labelledby": "import-title" },
      h("h3", { id: "import-title" }, "Import a file on this machine"),
      h("label", { for: "import-path" }, "Path (inside Hearth's home or an import_dirs folder)"), path,
      h("div.row", {}, h("div", {}, h("label", { for: "import-id" }, "Model id (optional)"), id),
        h("div", {}, h("label", { for: "import-mode" }, "How"), mode),
        h("button.button.primary", { type: "submit", icon: "upload" }, "Import")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { path: path.value.trim(), mode: mode.value };
        if (id.value.trim()) body.id = id.value.trim();
        const model = await api("/v1/models/import", { method: "POST", body });
        toast(`Imported ${model.id}.`);
        path.value = "";
        id.value = "";
        this.refresh();
      } catch (error) {
        toast(`Could not import: ${error.message}`, { error: true });
      }
    });
    return form;
  }

  show() {
    this.refresh();
    this.janProviders.load(); // once per visit: Jan's settings change rarely
    this.mcp.load(); // once per visit (and its Refresh button): listing tools starts servers
    clearInterval(this.timer);
    this.timer = setInterval(() => !document.hidden && this.refresh(), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  async refresh() {
    try {
      const [, running, downloads, tags] = await Promise.all([
        this.store.refreshModels(), api("/v1/running"), api("/v1/downloads"),
        api("/api/tags").catch(() => ({ models: [] })),
      ]);
      // Ollama's face reads the GGUF header of every model: quantization and size class
      this.details = new Map(tags.models.map((t) => [t.model.replace(/:latest$/, ""), t.details ?? {}]));
      this.store.running = running.data;
      this.jobs = downloads.data;
      for (const job of this.jobs) if (!isFinished(job) && !this.following.has(job.id)) this.follow(job);
      this.render();
    } catch (error) {
      if (error.status !== 401) toast(`Could not refresh: ${error.message}`, { error: true });
    }
  }

  render() {
    const running = this.store.running ?? [];
    this.runningCount.textContent = String(running.length);
    reconcile(this.runningList, running.length ? running : [null], {
      key: (r) => r?.id ?? "none",
      signature: (r) => (r ? `${r.status}|${r.memory}|${r.requests_served}|${Math.floor(Date.now() / 5000)}` : "none"),
      build: (r) => (r ? this.runningRow(r) : h("p.empty", {}, "No model is loaded. Models load on their first request.")),
    });
    const jobs = this.jobs.map((job) => this.following.get(job.id) ?? job).slice(-8).reverse();
    this.downloadSection.hidden = jobs.length === 0;
    reconcile(this.downloadList, jobs, {
      key: (j) => j.id,
      signature: (j) => `${j.state}|${j.done}|${j.total}|${j.error}`,
      build: (j) => this.downloadRow(j),
    });
    const models = this.store.models;
    this.modelCount.textContent = String(models.length);
    reconcile(this.modelList, models.length ? models : [null], {
      key: (m) => m?.id ?? "none",
      signature: (m) => (m ? JSON.stringify([m, this.details?.get(m.id)]) : "none"),
      build: (m) => (m ? this.modelRow(m) : h("p.empty", {}, "No models yet: download one above.")),
    });
  }

  modelRow(model) {
    const status = model.status;
    const caps = status === "invalid" ? [] : capabilitiesOf(model); // an unreadable file has no facts
    const details = this.details?.get(model.id) ?? {};
    // the GGUF header's (Ollama's face reads it) before a guess from the id: a Jan import's id
    // is whatever the user typed
    const quant = model.metadata?.quantization ?? details.quantization_level ?? quantizationOf(model);
    const params = model.metadata?.size_label ?? details.parameter_size;
    const facts = status === "invalid" ? null : h("div.facts", {},
      h("span", {}, "Size ", h("b", {}, formatBytes(model.size))),
      h("span", {}, "Quantization ", h("b", {}, quant || "–")),
      h("span", {}, "Context ", h("b", {}, contextOf(model)?.toLocaleString() ?? "–")),
      params ? h("span", {}, "Parameters ", h("b", {}, params)) : null,
      model.metadata?.architecture ? h("span", {}, "Architecture ", h("b", {}, model.metadata.architecture)) : null);
    const actions = h("div.row-actions");
    const add = (label, fn, cls = "") => actions.append(h(`button.button.small${cls}`, { type: "button", onclick: fn, "aria-label": `${label} ${model.id}` }, label));
    if (status === "running") add("Unload", () => this.unload(model.id));
    if (status === "ready") add("Load", () => this.load(model.id));
    if (status === "missing") add("Download files", () => this.downloadMissing(model.id));
    if (status !== "invalid") add("Edit", () => this.edit(model.id));
    add("Delete", () => this.remove(model), ".danger");
    // named by its id too where the name differs: Jan names two publishers' copies alike
    const label = model.name && model.name !== model.id ? `${model.name} (${model.id})` : model.id;
    const row = h("article.card.model-row", { "aria-label": label },
      h("div", {},
        h("div", {}, h("span.name", {}, model.name || model.id), " ",
          h(`span.badge.${status}`, {}, STATUS_TEXT[status] ?? status)),
        model.name && model.name !== model.id ? h("div.id", {}, model.id) : null,
        facts,
        caps.length ? h("div.caps", {}, caps.map((c) => h("span.tag", {}, c))) : null),
      actions);
    if (model.error) row.append(h("div.error-box", { role: "note" }, model.error));
    return row;
  }

  runningRow(r) {
    const left = r.expires_at ? r.expires_at - Date.now() / 1000 : null;
    return h("article.card.model-row", { "aria-label": `${r.id}, loaded` },
      h("div", {},
        h("div", {}, h("span.name", {}, r.id), " ", h(`span.badge.${r.status}`, {}, STATUS_TEXT[r.status] ?? r.status)),
        h("div.facts", {},
          h("span", {}, "Memory ", h("b", {}, formatBytes(r.memory))),
          h("span", {}, "Loaded ", h("b", {}, ago(r.since))),
          h("span", {}, "Unloads in ", h("b", {}, r.active_requests ? "– (busy)" : left === null ? "never" : formatDuration(left))),
          h("span", {}, "Requests ", h("b", {}, String(r.requests_served ?? 0))),
          r.engine_parameters?.ctx_len ? h("span", {}, "Context ", h("b", {}, Number(r.engine_parameters.ctx_len).toLocaleString())) : null)),
      h("div.row-actions", {}, h("button.button.small", { type: "button", "aria-label": `Unload ${r.id}`, onclick: () => this.unload(r.id) }, "Unload")));
  }

  downloadRow(job) {
    const total = job.total || 0;
    const percent = total ? Math.min(100, (100 * job.done) / total) : 0;
    const bar = h("div.progress", { role: "progressbar", "aria-label": `Download of ${job.model_id}`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(percent)) }, h("div"));
    bar.firstChild.style.width = `${percent}%`;
    const active = !isFinished(job);
    const numbers = active
      ? `${formatBytes(job.done)} of ${total ? formatBytes(total) : "?"} · ${Math.round(percent)}% · ${formatBytes(job.speed)}/s${job.eta ? ` · ${formatDuration(job.eta)} left` : ""}`
      : job.state === "completed" ? `Done · ${formatBytes(job.total || job.done)}` : `${job.state}${job.error ? `: ${job.error}` : ""}`;
    return h("article.card.download", { "aria-label": `Download of ${job.model_id}` },
      h("div.what", {}, job.model_id, " ", h(`span.badge.${active ? "downloading" : job.state === "completed" ? "ready" : "failed"}`, {}, job.state)),
      active ? h("button.button.small.danger", { type: "button", "aria-label": `Cancel the download of ${job.model_id}`, onclick: () => this.cancel(job.id) }, "Cancel") : h("span"),
      bar, h("div.numbers", {}, numbers));
  }

  /** Live progress of one job, from its event stream, until it ends. */
  async follow(job) {
    this.following.set(job.id, job);
    try {
      const response = await raw(`/v1/downloads/${enc(job.id)}`, { headers: { Accept: "text/event-stream" } });
      await readEvents(response, (data, event) => {
        if (event !== "progress") return;
        this.following.set(job.id, JSON.parse(data));
        this.render();
      });
    } catch (error) {
      console.warn("download progress:", error.message);
    }
    this.refresh();
  }

  async cancel(jobId) {
    try {
      await api(`/v1/downloads/${enc(jobId)}`, { method: "DELETE" });
    } catch (error) {
      toast(`Could not cancel: ${error.message}`, { error: true });
    }
    this.refresh();
  }

  async act(label, fn) {
    try {
      await fn();
    } catch (error) {
      toast(`${label}: ${error.message}`, { error: true });
    }
    this.refresh();
  }

  load(id) {
    toast(`Loading ${id}…`);
    return this.act("Could not load", () => api(`/v1/models/${enc(id)}/start`, { method: "POST", body: {} }));
  }

  unload(id) {
    return this.act("Could not unload", () => api(`/v1/models/${enc(id)}/stop`, { method: "POST" }));
  }

  downloadMissing(id) {
    return this.act("Could not download", async () => {
      const job = await api(`/v1/models/${enc(id)}/download`, { method: "POST" });
      if (job.id) this.follow(job);
    });
  }

  async remove(model) {
    const ok = await confirmDialog(`Delete ${model.id}?`,
      "Its folder and files are deleted from disk. A file you linked from elsewhere is kept.");
    if (ok) await this.act("Could not delete", () => api(`/v1/models/${enc(model.id)}`, { method: "DELETE" }));
  }

  edit(id) {
    openEditor(id, COMPUTED, () => this.refresh());
  }
}

function isFinished(job) {
  return ["completed", "failed", "cancelled"].includes(job.state);
}
