// Chat playground: model, system prompt and sampling settings; streamed answers with their
// time to first token and tokens/s; a stop button; multi-turn history.

import { ApiError, json, streamChat } from "./api.js";

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function initChat({ banner }) {
  const log = $("chat-log");
  const input = $("chat-input");
  const send = $("chat-send");
  const stop = $("chat-stop");
  let history = []; // [{role, content}] of finished turns
  let controller = null;

  if (matchMedia("(max-width: 760px)").matches) document.querySelector(".settings").open = false;
  for (const id of ["chat-temperature", "chat-top-p"]) {
    $(id).addEventListener("input", () => ($(`${id}-out`).textContent = $(id).value));
  }

  async function loadModels() {
    try {
      const models = await json("/v1/models");
      const select = $("chat-model");
      const current = select.value;
      select.replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
      if (current) select.value = current;
      banner(null);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) {
        banner(`${err.message} (retrying)`);
        setTimeout(loadModels, 2000);
        return false;
      }
      banner(`Could not list models: ${err.message}`);
      return false;
    }
  }

  function addMessage(role, text) {
    $("chat-empty")?.remove();
    const item = el("li", `message ${role}`);
    item.append(el("span", "role", role === "user" ? "You" : "Assistant"));
    const content = el("div", "content", text);
    item.append(content);
    log.append(item);
    item.scrollIntoView({ block: "end" });
    return { item, content };
  }

  function settings() {
    const body = {
      model: $("chat-model").value,
      temperature: Number($("chat-temperature").value),
      top_p: Number($("chat-top-p").value),
      max_tokens: Number($("chat-max-tokens").value) || undefined,
    };
    const seed = $("chat-seed").value.trim();
    if (seed !== "") body.seed = Number(seed);
    return body;
  }

  function conversation(userText) {
    const system = $("chat-system").value.trim();
    const messages = system ? [{ role: "system", content: system }] : [];
    return [...messages, ...history, { role: "user", content: userText }];
  }

  function busy(on) {
    send.disabled = on;
    stop.disabled = !on;
    log.setAttribute("aria-busy", String(on));
  }

  async function ask(text) {
    const messages = conversation(text);
    addMessage("user", text);
    const { item, content } = addMessage("assistant", "");
    const stats = el("p", "stats", "…");
    item.append(stats);
    item.dataset.state = "streaming";
    controller = new AbortController();
    busy(true);
    const start = performance.now();
    let first = null;
    let deltas = 0;
    let answer = "";
    const describe = (tokens, end) => {
      const ttft = first === null ? null : first - start;
      const rate = tokens > 1 && end > first ? ((tokens - 1) * 1000) / (end - first) : null;
      return [
        ttft === null ? null : `TTFT ${Math.round(ttft)} ms`,
        rate === null ? null : `${rate.toFixed(1)} tok/s`,
        `${tokens} tokens`,
      ].filter(Boolean).join(" · ");
    };
    try {
      const { usage, finishReason } = await streamChat(
        { ...settings(), messages },
        {
          signal: controller.signal,
          onDelta: (delta) => {
            first ??= performance.now();
            deltas += 1;
            answer += delta;
            content.textContent = answer;
            item.scrollIntoView({ block: "end" });
          },
        },
      );
      const tokens = usage?.completion_tokens ?? deltas;
      stats.textContent = describe(tokens, performance.now()) +
        (finishReason === "length" ? " · hit max tokens" : "");
      item.dataset.state = "done";
    } catch (err) {
      if (err.name === "AbortError") {
        stats.textContent = `${describe(deltas, performance.now())} · stopped`;
        item.dataset.state = "stopped";
      } else {
        stats.textContent = `Error: ${err.message}`;
        stats.classList.add("error");
        item.dataset.state = "error";
        answer = "";
      }
    } finally {
      controller = null;
      busy(false);
    }
    if (answer) {
      history = [...messages.filter((m) => m.role !== "system"), { role: "assistant", content: answer }];
    }
  }

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  stop.addEventListener("click", () => controller?.abort());
  $("chat-reset").addEventListener("click", () => {
    controller?.abort();
    history = [];
    log.replaceChildren(el("li", "empty", "Send a message to start a conversation."));
    log.firstChild.id = "chat-empty";
    input.focus();
  });

  loadModels();
  return { visible: () => {} };
}
