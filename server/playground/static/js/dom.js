// Small DOM helpers shared by the playground's sections. Text is always set as text, never markup
// (what is shown comes from calls and replies: user-controlled).

export function cell(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text ?? "";
  if (className) node.className = className;
  return node;
}
