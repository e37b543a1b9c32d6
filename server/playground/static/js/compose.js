// The composer: a conversation as form fields, turned into a Tavus-encoded request by the
// server (/v1/playground/encode), so the Tavus formats live in one place.
const FIELDS = ["user", "appearance", "emotions", "screen", "audio", "visual_scene", "reply"];

export function addTurn(values = {}) {
  const node = document.getElementById("turn-template").content.firstElementChild.cloneNode(true);
  for (const field of FIELDS) {
    if (values[field] !== undefined) node.querySelector(`[name=${field}]`).value = values[field];
  }
  node.querySelector(".remove").addEventListener("click", () => node.remove());
  document.getElementById("turns").append(node);
}

export function fill(scenario) {
  document.getElementById("compose-mode").value = scenario.perception ?? "raven";
  document.getElementById("compose-layout").value = scenario.layout ?? "system";
  document.getElementById("compose-language").value = scenario.language ?? "";
  document.getElementById("compose-system").value = scenario.system_prompt ?? "";
  document.getElementById("compose-greeting").value = scenario.greeting ?? "";
  document.getElementById("compose-phoenix4").checked = Boolean(scenario.phoenix4);
  document.getElementById("turns").replaceChildren();
  for (const turn of scenario.turns ?? []) addTurn(turn);
}

export function read() {
  const turns = [...document.querySelectorAll("#turns .turn")].map((node) => {
    const turn = {};
    for (const field of FIELDS) {
      const value = node.querySelector(`[name=${field}]`).value.trim();
      if (value || field === "user") turn[field] = value;
    }
    return turn;
  });
  return {
    perception: document.getElementById("compose-mode").value,
    layout: document.getElementById("compose-layout").value,
    language: document.getElementById("compose-language").value.trim() || null,
    system_prompt: document.getElementById("compose-system").value,
    greeting: document.getElementById("compose-greeting").value || null,
    phoenix4: document.getElementById("compose-phoenix4").checked,
    turns,
  };
}
