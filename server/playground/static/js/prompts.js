// Renders /v1/prompts/render output with the fenced perception block highlighted.
const FENCE = /\u27e6perception ([0-9a-f]+)\u27e7[\s\S]*?\u27e6\/perception \1\u27e7/g;

function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? `[${part.type}]`).join("\n");
  return content === null || content === undefined ? "" : JSON.stringify(content);
}

function highlighted(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(FENCE)) {
    nodes.push(document.createTextNode(text.slice(last, match.index)));
    const mark = document.createElement("mark");
    mark.className = "fence";
    mark.textContent = match[0];
    nodes.push(mark);
    last = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

export function show(column, rendered) {
  column.querySelector(".tokens").textContent =
    `${rendered.prompt_tokens} prompt tokens` + (rendered.dropped_turns ? `, ${rendered.dropped_turns} turns dropped` : "");
  column.querySelector(".messages").replaceChildren(...rendered.messages.map((message) => {
    const item = document.createElement("li");
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = message.role;
    const text = contentText(message.content) || (message.tool_calls ? JSON.stringify(message.tool_calls) : "");
    // Only a user turn carries the fenced data; the instructions merely name the markers.
    item.append(role, ...(message.role === "user" ? highlighted(text) : [document.createTextNode(text)]));
    return item;
  }));
}

export function clear(column) {
  column.querySelector(".tokens").textContent = "";
  column.querySelector(".messages").replaceChildren();
}
