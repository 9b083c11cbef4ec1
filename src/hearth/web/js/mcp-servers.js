// "Tools (MCP servers)" in the Models view: each MCP server the user configured (their
// mcp.json, and Jan's mcp_config.json in a Jan data folder) with its state, transport, file,
// tools, last error and stderr tail; the entries Hearth could not read; and, with none
// configured, where to write one and an example. The page only reads GET /v1/mcp/servers: no
// request defines a server. It paints the states at once (?start=false), then starts the active
// servers to list their tools, as their first use in a chat would; Refresh asks again.

import { api } from "./api.js";
import { fileBlock, h } from "./ui.js";

// Claude Desktop's format: a program (command, args, env) and a web service (url, headers).
const EXAMPLE = `{
  "mcpServers": {
    "time": {"command": "uvx", "args": ["mcp-server-time"]},
    "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer <key>"}}
  }
}`;
const BADGE = { running: "running", starting: "starting", failed: "failed", stopped: "ready", inactive: "ready" };
const STATE_TEXT = { running: "Running", starting: "Starting", failed: "Failed", stopped: "Not started", inactive: "Turned off" };
const TRANSPORT_TEXT = { stdio: "program (stdio)", http: "streamable HTTP", sse: "SSE" };
const STDERR_SHOWN = 20;

function toolList(tools) {
  return h("ul.mcp-tools", { "aria-label": "Tools" }, tools.map((tool) => {
    const description = String(tool.description ?? "").trim();
    const first = description.split("\n")[0];
    return h("li", { title: description || undefined }, h("code", {}, tool.name),
      first ? h("span", {}, ` ${first.length > 200 ? `${first.slice(0, 200)}…` : first}`) : null);
  }));
}

function serverCard(server) {
  const tools = Array.isArray(server.tools) ? server.tools : null;
  const tail = (server.stderr_tail ?? []).slice(-STDERR_SHOWN);
  const toolsPart = tools === null
    ? h("p.hint", {}, server.state === "inactive" ? "Turned off in its file (\"active\": false)." : "Its tools are listed once it has started.")
    : tools.length ? toolList(tools) : h("p.hint", {}, "It offers no tools.");
  return h("article.card.mcp-server", { "aria-label": `MCP server ${server.name}` },
    h("div", {}, h("span.name", {}, server.name), " ",
      h(`span.badge.${BADGE[server.state] ?? "ready"}`, {}, STATE_TEXT[server.state] ?? server.state), " ",
      h("span.tag", {}, TRANSPORT_TEXT[server.transport] ?? server.transport)),
    h("div.facts", {},
      h("span", {}, "From ", h("b", {}, server.source)),
      tools ? h("span", {}, "Tools ", h("b", {}, String(tools.length))) : null,
      server.restarts ? h("span", {}, "Restarts ", h("b", {}, String(server.restarts))) : null),
    toolsPart,
    server.last_error ? h("div.error-box", { role: "note" }, server.last_error) : null,
    tail.length ? h("details.mcp-stderr", {}, h("summary", {}, tail.length === 1 ? "Its last line of stderr" : `Its last ${tail.length} lines of stderr`),
      h("pre", {}, tail.join("\n"))) : null);
}

function filesLine(files) {
  const parts = files.map((f) => h("span", {}, h("code", {}, f.path),
    f.kind === "hearth" ? ` (yours${f.exists ? "" : ", not created yet"})` : " (Jan's, read too)"));
  return parts.length ? h("p.hint.mcp-files", {}, "Servers come from ", ...parts.flatMap((p, i) => (i ? [" and ", p] : [p])), ".") : null;
}

function howTo(files) {
  const mine = files.find((f) => f.kind === "hearth")?.path ?? "mcp.json";
  return h("div.card.mcp-howto", {},
    h("p", {}, "No MCP server is configured. MCP servers are programs or web services that give models tools (a clock, your files, a search)."),
    h("p", {}, "To add one, write it into ", h("code", {}, mine),
      " in the mcpServers format of Claude Desktop, Cursor and Jan (paste their block as it is): a program takes command, args and env; a web service takes url and headers. Hearth reads the file again when it changes."),
    fileBlock("the example mcp.json", mine, EXAMPLE));
}

/** The section; `load()` fills it (twice: states at once, then with the tools listed). */
export function mcpServersSection() {
  const count = h("span.count");
  const refresh = h("button.button.small", { type: "button", icon: "retry", "aria-label": "Refresh the MCP servers" }, "Refresh");
  const status = h("p.hint", { role: "status" });
  const problems = h("div.mcp-problems");
  const list = h("div.model-list");
  const footer = h("div");
  const section = h("section.mcp-servers", { "aria-labelledby": "mcp-title" },
    h("div.mcp-head", {}, h("h2", { id: "mcp-title" }, "Tools (MCP servers)", count), refresh),
    status, problems, list, footer);
  let asking = 0;

  const render = (answer) => {
    const servers = answer.data ?? [];
    const files = answer.files ?? [];
    count.textContent = String(servers.length);
    problems.replaceChildren(...(answer.problems ?? []).map((p) => h("div.error-box", { role: "note" }, p.message)));
    list.replaceChildren(...servers.map(serverCard));
    footer.replaceChildren(servers.length || answer.problems?.length ? filesLine(files) ?? "" : howTo(files));
  };

  const ask = async (start) => {
    const mine = ++asking;
    refresh.disabled = true;
    status.textContent = start ? "Starting the servers to list their tools…" : "";
    try {
      const answer = await api(`/v1/mcp/servers?start=${start}`);
      if (mine !== asking) return; // a later question is on its way
      render(answer);
      status.textContent = "";
    } catch (error) {
      if (mine === asking) status.textContent = `Could not list the MCP servers: ${error.message}`;
    } finally {
      if (mine === asking) refresh.disabled = false;
    }
  };
  refresh.addEventListener("click", () => ask(true));
  const load = async () => {
    await ask(false);
    await ask(true);
  };
  return { section, load };
}
