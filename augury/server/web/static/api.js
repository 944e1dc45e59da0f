// The server's API as the page uses it: every call carries the API key (kept only in this
// tab's sessionStorage); a 401 asks for a key and retries once it is given.

const KEY = "augury.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let askForKey = async () => null; // set by main.js: shows the dialog, resolves with the key
let pendingAsk = null;

export function onKeyNeeded(fn) {
  askForKey = fn;
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** Error text from an OpenAI ({error: {message}}) or KServe ({error: "..."}) envelope. */
export async function errorText(response) {
  try {
    const body = await response.json();
    const e = body.error;
    if (typeof e === "string") return e;
    if (e && e.message) return e.message;
    if (body.detail) return JSON.stringify(body.detail);
  } catch {
    /* not JSON */
  }
  return `${response.status} ${response.statusText}`;
}

/** fetch() with the key; on 401 asks for a key (one dialog for concurrent callers), retries. */
export async function request(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (response.status !== 401 || attempt >= 3) return response;
    const message = await errorText(response);
    pendingAsk ??= askForKey(apiKey() ? message : null).finally(() => (pendingAsk = null));
    const key = await pendingAsk;
    if (!key) return response;
  }
}

/** JSON of a GET or POST; throws ApiError with the server's message. */
export async function json(path, body, options = {}) {
  const init = body === undefined ? { method: options.method ?? "GET" } : {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
  };
  const response = await request(path, { ...init, signal: options.signal });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.json();
}

/**
 * Stream a chat completion: calls onDelta(text) per content delta and returns
 * {usage, finishReason}. Aborting `signal` closes the connection, which aborts the request
 * on the server.
 */
export async function streamChat(body, { signal, onDelta }) {
  const response = await request("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    headers: { "Content-Type": "application/json" },
    signal,
  });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let usage = null;
  let finishReason = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return { usage, finishReason };
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error.message ?? String(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices ?? []) {
          if (choice.delta?.content) onDelta(choice.delta.content);
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
      }
    }
  }
  return { usage, finishReason };
}
