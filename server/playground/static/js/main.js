// Wires the page: load a request, show what was perceived, render two templates, send.
import { call, setApiKey, stream } from "./api.js";
import * as calls from "./calls.js";
import * as compose from "./compose.js";
import * as experiments from "./experiments.js";
import * as perception from "./perception.js";
import * as prompts from "./prompts.js";

let request = null;
let responseModel = "echo";  // what /v1/models lists first: the configured model, else echo
let examples = { samples: [], scenarios: [] };
const columns = [...document.querySelectorAll(".column")];

function showError(error) {
  const banner = document.getElementById("error");
  banner.textContent = error ? error.message : "";
  banner.hidden = !error;
}

async function guarded(action) {
  try {
    showError(null);
    await action();
  } catch (error) {
    showError(error);
  }
}

async function renderColumn(column) {
  if (!request) return;
  const prompt = column.querySelector(".template").value;
  prompts.show(column, await call("/v1/prompts/render", { ...request, prompt }));
}

function setRequest(body) {
  request = body;
  for (const button of document.querySelectorAll(".send")) button.disabled = !body;
}

// Stale results must never sit beside a new request (or a request that failed to load).
function clearResults() {
  setRequest(null);
  document.getElementById("request-json").textContent = "";
  perception.clear();
  for (const column of columns) {
    prompts.clear(column);
    clearReply(column);
  }
}

let loads = 0;  // a newer request wins over a slower, older load still in flight

async function useRequest(body) {
  const load = ++loads;
  clearResults();
  document.getElementById("request-json").textContent = JSON.stringify(body, null, 2);
  const parsed = await call("/v1/perception/parse", body);
  if (load !== loads) return;
  perception.show(parsed);
  for (const column of columns) {
    const prompt = column.querySelector(".template").value;
    const rendered = await call("/v1/prompts/render", { ...body, prompt });
    if (load !== loads) return;
    prompts.show(column, rendered);
  }
  setRequest(body);  // only a request the server accepted can be sent
}

function clearReply(column) {
  column.querySelector(".reply").textContent = "";
  const timing = column.querySelector(".timing");
  timing.textContent = "";
  timing.classList.remove("fallback");
}

async function send(column) {
  if (!request) return;
  const reply = column.querySelector(".reply");
  const timing = column.querySelector(".timing");
  clearReply(column);
  timing.textContent = "streaming…";
  const prompt = column.querySelector(".template").value;
  let result;
  try {
    result = await stream({ ...request, prompt }, (text) => { reply.textContent += text; });
  } catch (error) {
    timing.textContent = "failed (see the message above)";
    throw error;
  }
  const { ttft, total, model, fallback } = result;
  const times = `first token ${ttft === null ? "–" : ttft.toFixed(0)} ms · total ${total.toFixed(0)} ms`;
  if (fallback) {  // a fast "reply" that no model wrote must not look like success
    timing.classList.add("fallback");
    timing.textContent = `fallback: ${fallback} — the server's fallback line, not a model's reply · ${times}`;
  } else {
    timing.textContent = `${model ? `${model} · ` : ""}${times}`;
  }
}

async function loadExample(value) {
  const [kind, index] = value.split(":");
  if (kind === "sample") return useRequest(examples.samples[Number(index)].body);
  compose.fill(examples.scenarios[Number(index)]);
  return useRequest(await call("/v1/playground/encode", compose.read()));
}

function parsePasted() {
  clearResults();
  const text = document.getElementById("paste").value;
  if (!text.trim()) throw new Error("paste a Tavus request body (JSON) first");
  let data;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`the pasted text is not valid JSON: ${explainJsonError(error, text)}`);
  }
  if (Array.isArray(data)) return { model: responseModel, stream: true, messages: data };
  if (!Array.isArray(data?.messages)) throw new Error('the JSON needs a "messages" list');
  return data;
}

// True when `text` stops inside a string or with brackets left open: truncated JSON, whatever
// the browser's own wording for it (Chrome, Firefox and Safari each say it differently).
function endsTooEarly(text) {
  const open = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") open.push(c);
    else if (c === "}" || c === "]") open.pop();
  }
  return inString || open.length > 0;
}

// Browsers word JSON errors differently ("Unexpected end of JSON input", "… at position 12");
// say it in words a person can act on.
function explainJsonError(error, text) {
  if (endsTooEarly(text)) return "it ends too early (a missing closing bracket, brace or quote?)";
  const position = /position (\d+)/.exec(error.message);
  if (position) {
    const at = Number(position[1]);
    const line = text.slice(0, at).split("\n").length;
    return `unexpected character at line ${line}: "${text.slice(at, at + 20)}"`;
  }
  return error.message;
}

let templates = [];

function describe(column) {
  const chosen = templates.find((t) => t.name === column.querySelector(".template").value);
  column.querySelector(".description").textContent = chosen ? chosen.description : "";
}

// Listeners are attached once; `start` (re)loads the data, e.g. after an API key is entered.
for (const column of columns) {
  column.querySelector(".template").addEventListener("change", () => {
    describe(column);
    clearReply(column);  // the reply belongs to the template it was sent with
    prompts.clear(column);
    guarded(() => renderColumn(column));
  });
  column.querySelector(".send").addEventListener("click", () => guarded(() => send(column)));
}

async function start() {
  const loadsBefore = loads;  // a request the user loads while this runs must not be replaced
  templates = (await call("/v1/prompts")).data;
  responseModel = (await call("/v1/models")).data[0]?.id ?? "echo";
  calls.start(showError);
  experiments.start();
  columns.forEach((column, i) => {
    const select = column.querySelector(".template");
    select.replaceChildren(...templates.map((t) => new Option(t.name, t.name)));
    select.value = i === 0 ? "default" : "passthrough";
    describe(column);
  });
  examples = await call("/v1/playground/examples");
  const select = document.getElementById("examples");
  select.replaceChildren(new Option("choose an example…", ""));
  const samples = document.createElement("optgroup");
  samples.label = "Tavus-shaped requests";
  samples.append(...examples.samples.map((s, i) => new Option(s.name, `sample:${i}`)));
  const scenarios = document.createElement("optgroup");
  scenarios.label = "Scenarios (opens the composer)";
  scenarios.append(...examples.scenarios.map((s, i) => new Option(s.name, `scenario:${i}`)));
  select.append(samples, scenarios);
  // Open on a real request, not an empty page, unless one was loaded meanwhile (a paste made
  // while these calls were in flight was replaced by the sample).
  if (!request && loads === loadsBefore && examples.samples.length) {
    const first = Math.max(0, examples.samples.findIndex((s) => s.name === "raven0-documented"));
    select.value = `sample:${first}`;
    await loadExample(select.value);
  }
}

document.getElementById("api-key").addEventListener("change", (event) => {
  setApiKey(event.target.value);
  guarded(start);
});
document.getElementById("examples").addEventListener("change", (event) => {
  if (event.target.value) guarded(() => loadExample(event.target.value));
});
document.getElementById("use-paste").addEventListener("click", () => guarded(() => useRequest(parsePasted())));
document.getElementById("add-turn").addEventListener("click", () => compose.addTurn());
document.getElementById("use-compose").addEventListener("click",
  () => guarded(async () => useRequest(await call("/v1/playground/encode", compose.read()))));
for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("[data-tab]")) {
      other.setAttribute("aria-selected", String(other === tab));
      document.getElementById(`tab-${other.dataset.tab}`).hidden = other !== tab;
    }
  });
}
compose.addTurn();
guarded(start);
