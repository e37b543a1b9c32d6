// Talks to this server's public API. The API key lives only in this module's memory.
let apiKey = "";

export function setApiKey(key) {
  apiKey = key.trim();
}

export class ApiError extends Error {
  constructor(status, message) {
    super(status ? `${status}: ${message}` : message);
    this.status = status;
  }
}

function headers() {
  const result = { "content-type": "application/json" };
  if (apiKey) result.authorization = `Bearer ${apiKey}`;
  return result;
}

async function failure(response) {
  let message = response.statusText;
  try {
    message = (await response.json()).error.message;
  } catch (_) { /* not an OpenAI error body */ }
  if (response.status === 401) message += " — enter the server's API key at the top right.";
  return new ApiError(response.status, message);
}

export async function call(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined
      ? { headers: headers() }
      : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `the server is unreachable (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

// The events of a server-sent-event response, in order: {data} for a `data:` payload, {comment}
// for a comment line (keep-alives, and the server's fallback marker).
async function* eventsOf(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (event.startsWith("data: ")) yield { data: event.slice(6) };
      else if (event.startsWith(": ")) yield { comment: event.slice(2) };
    }
  }
}

const FALLBACK_COMMENT = "fallback: ";

// Streams a chat completion; calls onText(text) per delta. Resolves to {ttft, total} in ms,
// the model that answered, and `fallback`: why the server spoke its fallback line instead of
// a model's reply (its X-Perception-LLM-Fallback header or `: fallback:` comment), else null.
export async function stream(body, onText) {
  const started = performance.now();
  let response;
  try {
    response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify({ ...body, stream: true }),
    });
  } catch (error) {
    throw new ApiError(0, `the server is unreachable (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  let ttft = null;
  let model = null;
  let fallback = response.headers.get("x-perception-llm-fallback");
  for await (const { data, comment } of eventsOf(response)) {
    if (comment !== undefined) {
      if (comment.startsWith(FALLBACK_COMMENT)) fallback = comment.slice(FALLBACK_COMMENT.length);
      continue;
    }
    if (data === "[DONE]") return { ttft, total: performance.now() - started, model, fallback };
    const chunk = JSON.parse(data);
    model ??= chunk.model ?? null;
    if (chunk.error) throw new ApiError(0, `the stream failed: ${chunk.error.message}`);
    const text = chunk.choices?.[0]?.delta?.content;
    if (text) {
      if (ttft === null) ttft = performance.now() - started;
      onText(text);
    }
  }
  throw new ApiError(0, "the stream ended without [DONE]");
}

// Reads a server-sent-event stream (fetch, so the API key can be sent); onData(json) per event.
export async function events(path, onData) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  for await (const { data } of eventsOf(response)) if (data !== undefined) onData(JSON.parse(data));
}
