// Editing a model: its common parameters in a form, or its model.json as JSON.
// Both save with PATCH /v1/models/{id} (objects merge, null removes a field), so Hearth keeps
// the names the file already uses and every field it does not know.

import { api, enc } from "./api.js";
import { h, toast } from "./ui.js";

const FIELDS = [
  // [label, section, key, type, hint]
  ["Name", null, "name", "text", ""],
  ["Description", null, "description", "text", ""],
  ["Temperature", "model_parameters", "temperature", "number", "0 to 2"],
  ["Top p", "model_parameters", "top_p", "number", "0 to 1"],
  ["Top k", "model_parameters", "top_k", "number", ""],
  ["Max tokens", "model_parameters", "max_tokens", "number", "per answer"],
  ["Repeat penalty", "model_parameters", "repeat_penalty", "number", ""],
  ["Stop sequences", "model_parameters", "stop", "list", "comma-separated"],
  ["Context (tokens)", "engine_parameters", "ctx_len", "number", "reloads the model"],
  ["GPU layers", "engine_parameters", "ngl", "number", ""],
  ["Parallel requests", "engine_parameters", "n_parallel", "number", ""],
];

/** Keys of `before` missing from `after` become null, so a PATCH can remove them. */
export function patchFrom(before, after) {
  const patch = {};
  for (const [key, value] of Object.entries(after)) {
    const old = before?.[key];
    if (isObject(value) && isObject(old)) {
      const inner = patchFrom(old, value);
      if (Object.keys(inner).length) patch[key] = inner;
    } else if (JSON.stringify(value) !== JSON.stringify(old)) {
      patch[key] = value;
    }
  }
  for (const key of Object.keys(before ?? {})) if (!(key in after)) patch[key] = null;
  return patch;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function fieldValue(model, section, key) {
  const value = section ? model[section]?.[key] : model[key];
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function readField(input, type) {
  const text = input.value.trim();
  if (text === "") return null;
  if (type === "number") return Number(text);
  if (type === "list") return text.split(",").map((s) => s.trim()).filter(Boolean);
  return text;
}

export async function openEditor(id, computed, onSaved) {
  let model;
  try {
    model = await api(`/v1/models/${enc(id)}`);
  } catch (error) {
    toast(`Could not open ${id}: ${error.message}`, { error: true });
    return;
  }
  const dialog = document.getElementById("model-dialog");
  const form = document.getElementById("model-form");
  const editable = Object.fromEntries(Object.entries(model).filter(([k]) => !computed.includes(k)));
  const inputs = FIELDS.map(([label, section, key, type, hint]) => {
    const inputId = `edit-${section ?? "top"}-${key}`;
    const input = h("input", { id: inputId, type: type === "number" ? "number" : "text", step: "any", placeholder: hint });
    input.value = fieldValue(model, section, key);
    // `initial`: what the dialog opened with; only fields changed since are sent (a Jan
    // model's shown defaults, merged from Jan's settings, must not land in its model.yml)
    return { section, key, type, input, initial: input.value, label: h("label", { for: inputId }, label) };
  });
  const formPanel = h("div", { id: "edit-form-panel", role: "tabpanel", "aria-labelledby": "tab-form" },
    h("div.grid-2", {}, inputs.map((f) => h("div", {}, f.label, f.input))));
  const json = h("textarea.json", { id: "edit-json", "aria-label": "model.json", spellcheck: "false" });
  json.value = JSON.stringify(editable, null, 2);
  const jsonPanel = h("div", { id: "edit-json-panel", role: "tabpanel", "aria-labelledby": "tab-json", hidden: true },
    h("p.hint", {}, "The model's fields as model.json holds them (with defaults filled in). Fields you remove are removed."), json);
  const tab = (tabId, label, panel, other, otherPanel) => h("button", { type: "button", role: "tab", id: tabId,
    "aria-controls": panel.id, "aria-selected": panel.hidden ? "false" : "true", onclick: (e) => {
      panel.hidden = false;
      otherPanel.hidden = true;
      e.currentTarget.setAttribute("aria-selected", "true");
      document.getElementById(other).setAttribute("aria-selected", "false");
    } }, label);
  const error = h("p.error-text", { role: "alert", hidden: true });
  form.replaceChildren(
    h("h2", { id: "model-dialog-title" }, `Edit ${model.name || id}`),
    h("div.tabs", { role: "tablist" }, tab("tab-form", "Parameters", formPanel, "tab-json", jsonPanel),
      tab("tab-json", "model.json", jsonPanel, "tab-form", formPanel)),
    formPanel, jsonPanel, error,
    h("div.dialog-actions", {},
      h("button.button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      h("button.button.primary", { type: "submit", value: "save" }, "Save")));
  form.onsubmit = async (event) => {
    event.preventDefault();
    let patch;
    if (!jsonPanel.hidden) {
      try {
        patch = patchFrom(editable, JSON.parse(json.value));
      } catch (e) {
        error.textContent = `That is not valid JSON: ${e.message}`;
        error.hidden = false;
        return;
      }
    } else {
      patch = {};
      for (const f of inputs) {
        if (f.input.value === f.initial) continue; // untouched: not sent
        const value = readField(f.input, f.type);
        if (f.section) (patch[f.section] ??= {})[f.key] = value;
        else patch[f.key] = value;
      }
    }
    try {
      await api(`/v1/models/${enc(id)}`, { method: "PATCH", body: patch });
      dialog.close();
      toast(`Saved ${id}.`);
      onSaved();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  };
  dialog.showModal();
}
