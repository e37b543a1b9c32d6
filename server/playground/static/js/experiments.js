// The Experiments view: runs of `perception-llm eval`, newest first; a run's matrix (test x
// template x model x assertion, pass rate and 95% interval); a cell's replies with each verdict
// and the exact messages the model got. Text is set with textContent only: replies and prompts
// carry user-controlled text.
import { call } from "./api.js";
import { cell } from "./dom.js";

function row(cells, data) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  Object.assign(tr.dataset, data ?? {});
  return tr;
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();
const range = (r) => `${r.ci_low.toFixed(2)}–${r.ci_high.toFixed(2)}`;
let current = null;

async function showReplies(run, test, template, model) {
  const query = new URLSearchParams({ test, template, model });
  const replies = (await call(`/v1/experiments/${run}/replies?${query}`)).data;
  const box = document.getElementById("experiment-replies");
  box.replaceChildren(cell("h3", `${test} · ${template} · ${model}`));
  for (const reply of replies) {
    const verdicts = document.createElement("ul");
    verdicts.append(...reply.assertions.map((a) => cell("li",
      `${a.type}: ${a.passed === null ? "errored" : a.passed ? "passed" : "failed"}${a.reason ? ` — ${a.reason}` : ""}${a.raw ? ` (judge said: ${a.raw})` : ""}`,
      a.passed === false ? "flag" : "")));
    const prompt = document.createElement("ol");
    prompt.className = "messages";
    prompt.append(...reply.prompt.map((message) => {
      const item = document.createElement("li");
      const content = typeof message.content === "string" ? message.content : JSON.stringify(message.content);
      item.append(cell("span", message.role, "role"), document.createTextNode(content ?? ""));
      return item;
    }));
    const details = document.createElement("details");
    details.append(cell("summary", "Messages the model got"), prompt);
    const timing = reply.ttft_ms === null ? "" : ` · first token ${Math.round(reply.ttft_ms)} ms${reply.cached ? " (cached)" : ""}`;
    box.append(
      cell("h4", `sample ${reply.sample}${timing}`),
      cell("div", reply.error ? `error: ${reply.error}` : reply.reply, "reply"),
      verdicts, details,
    );
  }
}

async function showRun(id) {
  current = id;
  for (const tr of document.querySelectorAll("#experiment-runs tr[data-id]")) {
    tr.classList.toggle("selected", tr.dataset.id === String(id));
  }
  const run = await call(`/v1/experiments/${id}`);
  const summary = run.summary;
  const matrix = document.getElementById("experiment-matrix");
  const rows = [row(["test", "template", "model", "assertion", "pass", "95% CI", "score", "ttft p50"].map((h) => cell("th", h)))];
  for (const r of summary.rows) {
    const state = r.errored ? "errored" : r.failed ? "failed" : "";
    rows.push(row([
      cell("td", r.test), cell("td", r.template), cell("td", r.model), cell("td", r.label),
      cell("td", `${r.passed}/${r.total}${r.errored ? ` +${r.errored} errored` : ""}`, state ? "flag" : ""),
      cell("td", range(r)), cell("td", r.score_mean === null ? "–" : r.score_mean.toFixed(2)),
      cell("td", r.ttft_p50_ms === null ? "–" : `${Math.round(r.ttft_p50_ms)} ms${r.ttft_cached ? "*" : ""}`),
    ], { run: id, test: r.test, template: r.template, model: r.model }));
  }
  matrix.replaceChildren(...rows);
  const templates = summary.templates.map((t) => `${t.template} ${t.passed}/${t.total}${t.meets_threshold ? "" : " (under the threshold)"}`);
  document.getElementById("experiment-summary").textContent =
    `Run #${id} · ${run.suite} · ${run.status} · ${templates.join(", ")} · ${summary.model_calls} model calls, ${summary.cache_hits} cached`;
  document.getElementById("experiment-replies").replaceChildren();
}

export async function start() {
  const status = document.getElementById("experiments-status");
  try {
    const runs = await call("/v1/experiments");
    if (!runs.stored || !runs.data.length) {
      status.textContent = "No eval runs yet: run `perception-llm eval perception-basics` in this server's folder (or with its capture database).";
      return;
    }
    const table = document.getElementById("experiment-runs");
    table.replaceChildren(
      row(["#", "when", "suite", "status", "seconds"].map((h) => cell("th", h))),
      ...runs.data.map((r) => row([cell("td", r.id), cell("td", when(r.started_at)), cell("td", r.suite),
        cell("td", r.status, r.status === "passed" ? "" : "flag"), cell("td", r.seconds.toFixed(1))], { id: r.id })),
    );
    await showRun(current ?? runs.data[0].id);
  } catch (error) {
    status.textContent = `Experiments: ${error.message}`;
  }
}

document.getElementById("experiment-runs").addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-id]");
  if (tr) showRun(Number(tr.dataset.id)).catch(() => {});
});
document.getElementById("experiment-matrix").addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-test]");
  if (tr) showReplies(tr.dataset.run, tr.dataset.test, tr.dataset.template, tr.dataset.model).catch(() => {});
});
