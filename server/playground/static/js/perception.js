// Renders /v1/perception/parse output. Text goes in with textContent only: perception is
// untrusted (a screen share can carry markup). The field columns are the parse's own keys (the
// server's field registry, perception/fields.py), so the page lists no fields of its own.

function cell(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text ?? "";
  if (className) node.className = className;
  return node;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

// Where Tavus put the perception (issue 22): system messages, perception-only user messages, both.
export function layoutNote(parsed) {
  const where = {
    system: "in system messages",
    user: "in user-role messages",
    mixed: "in both system and user-role messages",
    none: "none",
  }[parsed.layout] ?? parsed.layout;
  const rules = (parsed.wrapped_rules ?? []).map((rule) => rule.text.split("\n")[0]);
  return `Perception layout: ${where}` +
    (rules.length ? ` · Tavus' rules from user-role wrappers: ${rules.join("; ")}` : "");
}

export function clear() {
  document.getElementById("mode").textContent = "–";
  document.getElementById("layout").textContent = "";
  for (const id of ["latest", "timeline", "issues"]) document.getElementById(id).replaceChildren();
  document.getElementById("emotion-rule").textContent = "";
}

function showEmotionRule(rule) {
  document.getElementById("emotion-rule").textContent = rule
    ? `Phoenix-4 emotion-tag rule: "${rule.text}" — allowed values: ${
      rule.values ? rule.values.join(", ") : "the server's setting"
    }${rule.examples.length ? ` (examples: ${rule.examples.join(", ")})` : ""}. Replies are ` +
      "guaranteed to start with one well-formed tag."
    : "No emotion-tag rule: replies are not tagged.";
}

export function show(parsed) {
  showEmotionRule(parsed.emotion_rule);
  document.getElementById("mode").textContent = parsed.mode;
  document.getElementById("layout").textContent = layoutNote(parsed);
  const latest = { ...parsed.latest, ...parsed.latest.extra };
  delete latest.extra;
  const seen = Object.entries(latest).filter(([, value]) => value !== null);
  document.getElementById("latest").replaceChildren(
    ...(seen.length ? seen.map(([name, value]) => row(cell("th", name), cell("td", value)))
      : [row(cell("td", "nothing perceived"))]));

  const extras = [...new Set(parsed.observations.flatMap((o) => Object.keys(o.extra)))];
  const fields = Object.keys(parsed.latest).filter((name) => name !== "extra");
  const columns = [...fields, ...extras];
  const previous = {};
  const body = parsed.observations.map((observation) => {
    const values = { ...observation, ...observation.extra };
    const cells = columns.map((name) => {
      const value = values[name] ?? null;
      const changed = value !== null && name in previous && previous[name] !== value;
      if (value !== null) previous[name] = value;
      return cell("td", value ?? "", changed ? "changed" : "");
    });
    return row(cell("td", `#${observation.message_index}`), cell("td", observation.source), ...cells);
  });
  document.getElementById("timeline").replaceChildren(
    row(cell("th", "msg"), cell("th", "source"), ...columns.map((name) => cell("th", name))), ...body);

  document.getElementById("issues").replaceChildren(
    ...(parsed.issues.length ? parsed.issues.map((issue) =>
      cell("li", `${issue.message_index === null ? "" : `#${issue.message_index} `}${issue.kind}: ${issue.detail}`))
      : [cell("li", "none")]));
}
