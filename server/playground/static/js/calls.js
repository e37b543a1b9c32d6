// The Calls view: captured conversations, newest first; one conversation's calls as a timeline
// (requests abandoned in favour of a later one folded under it); one call's perception and the
// exact messages the model got. Live: /v1/calls/live says when new calls were written.
// Text is set with textContent only: everything here is untrusted.
import { call, events } from "./api.js";
import { cell } from "./dom.js";
import { layoutNote } from "./perception.js";

let selected = null;
let watching = false;

function row(cells, id) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  if (id !== undefined) tr.dataset.id = id;
  return tr;
}

const time = (seconds) => new Date(seconds * 1000).toLocaleTimeString();
const ABANDONED = new Set(["superseded", "cancelled"]);

function flags(item) {
  const found = [];
  if (item.unknown_tags) found.push(`unknown tags: ${item.unknown_tags}`);
  if (item.issues) found.push(`${item.issues} parse issues`);
  if (item.outcome === "fallback") found.push("spoke the fallback");
  if (item.outcome === "failed") found.push(`failed: ${item.error ?? ""}`);
  if (item.shared) found.push("shared an identical request's reply");
  return found.join(" · ");
}

async function showCall(id) {
  const detail = document.getElementById("call-detail");
  const full = await call(`/v1/calls/${id}`);
  const latest = Object.entries({ ...full.parsed.latest, ...full.parsed.latest.extra })
    .filter(([name, value]) => name !== "extra" && value !== null);
  const perceived = document.createElement("table");
  perceived.append(...latest.map(([name, value]) => row([cell("th", name), cell("td", value)])));
  const messages = document.createElement("ol");
  messages.className = "messages";
  messages.append(...full.prompt.messages.map((message) => {
    const item = document.createElement("li");
    const content = typeof message.content === "string" ? message.content : JSON.stringify(message.content ?? message.tool_calls);
    item.append(cell("span", message.role, "role"), document.createTextNode(content));
    return item;
  }));
  detail.replaceChildren(
    cell("h3", `Call #${full.id} · ${full.template} · ${full.prompt.prompt_tokens} prompt tokens · served by ${full.replica ?? "–"}`),
    cell("p", flags(full), "flag"),
    cell("h3", "Perceived"), cell("p", layoutNote(full.parsed), "muted"), perceived,
    cell("h3", "Messages the model got"), messages,
    cell("h3", "Reply"), cell("div", full.reply.text || JSON.stringify(full.reply.tool_calls), "reply"),
  );
}

// The snapshot this call carried; a field that changed since the previous answered call is marked.
function perceivedCell(item, before) {
  const td = document.createElement("td");
  for (const [name, value] of Object.entries(JSON.parse(item.perceived))) {
    const line = cell("div", `${name}: ${value}`, before[name] !== undefined && before[name] !== value ? "changed" : "");
    td.append(line);
  }
  return td;
}

async function showConversation(id) {
  selected = id;
  for (const tr of document.querySelectorAll("#conversations tr[data-id]")) {
    tr.classList.toggle("selected", tr.dataset.id === id);
  }
  const calls = (await call(`/v1/calls?conversation=${encodeURIComponent(id)}`)).data;
  const rows = [row(["#", "time", "replica", "outcome", "first token", "template", "tokens", "user said", "perceived (changes marked)", "flags"].map((h) => cell("th", h)))];
  let folded = [];
  let before = {};
  for (const item of calls) {
    if (ABANDONED.has(item.outcome)) { folded.push(item); continue; }
    const ttft = item.ttft_ms === null ? "–" : `${item.ttft_ms.toFixed(0)} ms`;
    rows.push(row([
      cell("td", `#${item.id}`), cell("td", time(item.started_at)), cell("td", item.replica ?? "–"), cell("td", item.outcome),
      cell("td", ttft), cell("td", item.template), cell("td", item.prompt_tokens),
      cell("td", item.user_text), perceivedCell(item, before), cell("td", flags(item), "flag"),
    ], item.id));
    before = JSON.parse(item.perceived);
    if (folded.length) {
      const note = row([cell("td", ""), cell("td", `↳ ${folded.length} abandoned before it (${folded.map((f) => `#${f.id} ${f.outcome}`).join(", ")})`)]);
      note.className = "folded";
      note.lastChild.colSpan = 9;
      rows.push(note);
      folded = [];
    }
  }
  for (const item of folded) {  // abandoned with nothing after them yet
    rows.push(row([cell("td", `#${item.id}`), cell("td", time(item.started_at)), cell("td", item.replica ?? "–"), cell("td", item.outcome), cell("td", "–"), cell("td", item.template), cell("td", item.prompt_tokens), cell("td", item.user_text), perceivedCell(item, {}), cell("td", flags(item), "flag")], item.id));
  }
  document.getElementById("call-timeline").replaceChildren(...rows);
}

async function refresh() {
  const listing = await call("/v1/calls");
  if (!listing.capturing) {
    document.getElementById("calls-status").textContent =
      "This server is not recording calls: start it with `perception-llm serve --capture` to see real calls here.";
    return false;
  }
  const conversations = listing.data;
  const table = document.getElementById("conversations");
  // A conversation served by more than one replica lost its sticky routing somewhere: flagged.
  table.replaceChildren(row(["conversation", "calls", "replicas", "last"].map((h) => cell("th", h))),
    ...conversations.map((c) => row([
      cell("td", c.conversation_id ?? "–", c.issues ? "flag" : ""), cell("td", c.calls),
      cell("td", c.replicas, c.replicas > 1 ? "flag" : ""), cell("td", time(c.last_at)),
    ], c.conversation_id ?? "")));
  if (selected !== null) await showConversation(selected);
  return true;
}

export async function start(onError) {
  try {
    if (!(await refresh())) return;
  } catch (error) {
    document.getElementById("calls-status").textContent = `Calls: ${error.message}`;
    return;
  }
  if (watching) return;
  watching = true;
  events("/v1/calls/live", () => refresh().catch(onError)).catch(() => { watching = false; });
}

document.getElementById("conversations").addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-id]");
  if (tr) showConversation(tr.dataset.id).catch(() => {});
});
document.getElementById("call-timeline").addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-id]");
  if (tr) showCall(tr.dataset.id).catch(() => {});
});
