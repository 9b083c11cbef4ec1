// Jan's remote providers in the Models view: folded by default, each with the engine.json that
// would enable it in Hearth (copy button) and the model.json one of its models needs. Hearth
// never enables one itself and the answer holds no key (GET /v1/jan/providers).

import { api } from "./api.js";
import { fileBlock, h } from "./ui.js";

/** One provider: its state, Hearth's side, and the files that would enable it. */
function providerCard(p) {
  const state = p.active ? "active in Jan" : "inactive in Jan";
  const hearth = p.configured ? `Hearth has it (${p.configured})` : "not in Hearth yet";
  const models = p.models ?? [];
  const more = p.models_total > models.length ? ` (+${p.models_total - models.length})` : "";
  return h("article.card.jan-provider", { "aria-label": `Jan provider ${p.name}` },
    h("div", {}, h("span.name", {}, p.name), " ", h("span.tag", {}, p.engine)),
    h("div.facts", {}, h("span", {}, state), h("span", {}, hearth),
      p.base_url ? h("span", {}, h("b", {}, p.base_url)) : null),
    models.length ? h("div.id", {}, `Jan's models: ${models.slice(0, 8).join(", ")}${models.length > 8 ? ", …" : ""}${more}`) : null,
    p.engine_json ? fileBlock(`the engine.json for ${p.engine}`, p.engine_json_path, JSON.stringify(p.engine_json, null, 2)) : null,
    p.engine_json ? h("details.model-json", {}, h("summary", {}, "and a model.json for one of its models"),
      fileBlock(`the model.json for ${p.engine}`, p.model_json_path, JSON.stringify(p.model_json, null, 2))) : null,
    p.engine_json ? h("p.hint", {}, `Then set ${p.api_key_env} to the key (Jan keeps it in its keyring; Hearth never reads it) and restart Hearth.`) : null,
    ...(p.notes ?? []).map((note) => h("p.hint", { role: "note" }, note)));
}

/** The section (hidden until a Jan folder lists a provider); `load()` fills it. */
export function janProvidersSection() {
  const count = h("span.count");
  const list = h("div.model-list");
  const error = h("p.hint", { hidden: true });
  const section = h("section.jan-providers", { "aria-labelledby": "jan-prov-title", hidden: true },
    h("details", {},
      h("summary", {}, h("h2", { id: "jan-prov-title" }, "Jan's remote providers", count)),
      h("p.hint", {}, "Jan uses these; Hearth uses none on its own. To serve one from Hearth, add its engine.json and a model.json, and set the key variable."),
      error, list));
  const load = async () => {
    try {
      const answer = await api("/v1/jan/providers");
      const data = answer.data ?? [];
      count.textContent = String(data.length);
      list.replaceChildren(...data.map(providerCard));
      error.hidden = !answer.error;
      error.textContent = answer.error ?? "";
      section.hidden = !answer.jan || (data.length === 0 && !answer.error);
    } catch (failure) {
      console.warn("Jan providers:", failure.message);
    }
  };
  return { section, load };
}
