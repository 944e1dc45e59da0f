// Predict playground: lists the models of the KServe v2 repository, builds a form from each
// model's declared inputs (numbers for tabular inputs, an image upload or drawing canvas, a
// text box) and shows the answer: top classes as bars, or the regression / embedding values.

import { ApiError, errorText, json, request } from "./api.js";
import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);
const IMAGE_NAME = /image|img|picture|photo|pixels/i;
const MAX_FIELDS = 64; // more columns than this: one box of comma-separated values
const TOP_BARS = 5;

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

/** What kind of field a declared input gets: "image", "text" or "numbers". */
export function kindOf(input) {
  const hint = String(input.parameters?.content_type ?? "");
  if (input.datatype !== "BYTES") return "numbers";
  if (/image/i.test(hint) || IMAGE_NAME.test(input.name)) return "image";
  return "text";
}

function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// --- fields: each returns {node, read() -> KServe input tensor (throws Error with a hint)} ---

function textField(input) {
  const id = nextId("text");
  const area = el("textarea", { id, rows: "4", "data-input": input.name });
  return {
    node: el("div", { className: "field" }, el("label", { for: id, text: input.name }), area),
    read() {
      if (!area.value.trim()) throw new Error(`${input.name}: enter some text`);
      return { name: input.name, shape: [1], datatype: input.datatype, data: [area.value] };
    },
  };
}

function numbersField(input, meta) {
  const width = input.shape.length > 1 ? input.shape[input.shape.length - 1] : 1;
  const names = input.parameters?.features ?? meta.parameters?.features ?? [];
  const integer = /INT/.test(input.datatype);
  const bool = input.datatype === "BOOL";
  const box = el("fieldset", { className: "field numbers" }, el("legend", { text: input.name }));
  const cells = [];
  if (width > 0 && width <= MAX_FIELDS) {
    const grid = el("div", { className: "number-grid" });
    for (let i = 0; i < width; i++) {
      const id = nextId("num");
      const field = el("input", {
        id, type: bool ? "checkbox" : "number", step: integer ? "1" : "any",
        "data-input": input.name, "data-index": String(i),
      });
      if (!bool) field.value = "0";
      cells.push(field);
      grid.append(el("label", { for: id, text: names[i] ?? `${input.name}[${i}]` }, field));
    }
    box.append(grid);
  }
  const pasteId = nextId("paste");
  const paste = el("textarea", {
    id: pasteId, rows: "2", placeholder: "e.g. 5.1, 3.5, 1.4, 0.2", "data-input": `${input.name}:csv`,
  });
  paste.addEventListener("input", () => {
    const values = paste.value.split(/[\s,;]+/).filter(Boolean);
    values.slice(0, cells.length).forEach((v, i) => (cells[i].value = v));
  });
  box.append(el("label", { for: pasteId, className: "paste", text: cells.length
    ? "or paste comma-separated values" : `comma-separated values (${width > 0 ? width : "any number"})` }),
  paste);
  return {
    node: box,
    read() {
      const raw = cells.length
        ? cells.map((c) => (bool ? c.checked : c.value))
        : paste.value.split(/[\s,;]+/).filter(Boolean);
      const data = bool ? raw.map(Boolean) : raw.map(Number);
      if (!bool && data.some((v) => !Number.isFinite(v) || (integer && !Number.isInteger(v)))) {
        throw new Error(`${input.name}: every value must be ${integer ? "an integer" : "a number"}`);
      }
      if (width > 0 && data.length !== width) {
        throw new Error(`${input.name}: needs ${width} values, got ${data.length}`);
      }
      const shape = input.shape.length > 1 ? [1, data.length] : [data.length];
      return { name: input.name, shape, datatype: input.datatype, data };
    },
  };
}

function imageField(input) {
  const box = el("fieldset", { className: "field image" }, el("legend", { text: input.name }));
  const mode = nextId("mode");
  const drawRadio = el("input", { type: "radio", name: mode, value: "draw", checked: "" });
  const fileRadio = el("input", { type: "radio", name: mode, value: "upload" });
  box.append(el("div", { className: "modes", role: "radiogroup", "aria-label": "Image source" },
    el("label", {}, drawRadio, " Draw"), el("label", {}, fileRadio, " Upload")));

  const canvas = el("canvas", {
    width: "224", height: "224", className: "draw", "data-input": input.name,
    role: "img", "aria-label": "Drawing area: draw a digit with the mouse, a pen or a finger",
  });
  const ctx = canvas.getContext("2d");
  let inked = false;
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    inked = false;
  };
  clear();
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = point(e);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = point(e);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 18;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
    inked = true;
  });
  for (const end of ["pointerup", "pointercancel"]) canvas.addEventListener(end, () => (last = null));
  const clearButton = el("button", { type: "button", className: "quiet", text: "Clear" });
  clearButton.addEventListener("click", clear);
  const drawBox = el("div", { className: "draw-box" }, canvas, clearButton);

  const fileId = nextId("file");
  const file = el("input", { id: fileId, type: "file", accept: "image/*", "data-input": `${input.name}:file` });
  const preview = el("img", { alt: "", className: "preview" });
  file.addEventListener("change", () => {
    if (file.files[0]) preview.src = URL.createObjectURL(file.files[0]);
  });
  const uploadBox = el("div", { className: "upload-box" },
    el("label", { for: fileId, text: "Image file" }), file, preview);
  uploadBox.hidden = true;
  const sync = () => {
    drawBox.hidden = fileRadio.checked;
    uploadBox.hidden = !fileRadio.checked;
  };
  drawRadio.addEventListener("change", sync);
  fileRadio.addEventListener("change", sync);
  box.append(drawBox, uploadBox);

  return {
    node: box,
    async read() {
      let bytes;
      if (fileRadio.checked) {
        if (!file.files[0]) throw new Error(`${input.name}: choose an image file`);
        bytes = new Uint8Array(await file.files[0].arrayBuffer());
      } else {
        if (!inked) throw new Error(`${input.name}: draw something first`);
        // Downscale with smoothing: small models (8x8 digits) read the strokes' coverage.
        const small = el("canvas", { width: "64", height: "64" });
        const sctx = small.getContext("2d");
        sctx.imageSmoothingQuality = "high";
        sctx.drawImage(canvas, 0, 0, 64, 64);
        const blob = await new Promise((resolve) => small.toBlob(resolve, "image/png"));
        bytes = new Uint8Array(await blob.arrayBuffer());
      }
      return { name: input.name, shape: [1], datatype: "BYTES", data: [bytesToBase64(bytes)] };
    },
  };
}

function fieldFor(input, meta) {
  const kind = kindOf(input);
  if (kind === "image") return imageField(input);
  if (kind === "text") return textField(input);
  return numbersField(input, meta);
}

// --- results ---

function bars(pairs) {
  const list = el("ol", { className: "bars", "aria-label": "Top classes" });
  for (const [label, p] of pairs) {
    const percent = `${(p * 100).toFixed(1)}%`;
    const fill = el("div", { className: "fill" });
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    list.append(el("li", { "data-label": label },
      el("span", { className: "bar-label", text: label }),
      el("div", { className: "bar", "aria-hidden": "true" }, fill),
      el("span", { className: "bar-value", text: percent })));
  }
  return list;
}

function flat(output) {
  return Array.isArray(output.data) ? output.data.flat(Infinity) : [];
}

export function renderResult(answer, meta) {
  const out = Object.fromEntries((answer.outputs ?? []).map((o) => [o.name, o]));
  const labels = meta.parameters?.labels ?? [];
  const parts = [];
  if (out.label) parts.push(el("p", { className: "headline", text: `Predicted: ${flat(out.label)[0]}` }));
  let pairs = null;
  if (out.probabilities) {
    pairs = flat(out.probabilities).map((p, i) => [String(labels[i] ?? i), Number(p)]);
  } else if (out.top_k_labels && out.top_k_probabilities) {
    const names = flat(out.top_k_labels);
    pairs = flat(out.top_k_probabilities).map((p, i) => [String(names[i]), Number(p)]);
  }
  if (pairs) parts.push(bars(pairs.sort((a, b) => b[1] - a[1]).slice(0, TOP_BARS)));
  if (out.prediction) {
    const units = out.prediction.parameters?.units ?? "";
    const values = flat(out.prediction).map((v) => `${Number(v).toPrecision(5)} ${units}`.trim());
    parts.push(el("p", { className: "headline", text: `Prediction: ${values.join(", ")}` }));
  }
  if (out.embedding) {
    const values = flat(out.embedding);
    parts.push(el("p", { text: `Embedding of ${values.length} dimensions: ` +
      `${values.slice(0, 6).map((v) => Number(v).toFixed(3)).join(", ")}…` }));
  }
  if (!parts.length) {
    for (const o of answer.outputs ?? []) parts.push(el("p", { text: `${o.name}: ${flat(o).slice(0, 10).join(", ")}` }));
  }
  const raw = el("details", {}, el("summary", { text: "Raw response" }),
    el("pre", { text: JSON.stringify(answer, null, 2) }));
  return [...parts, raw];
}

// --- the section ---

export function initPredict() {
  const select = $("predict-model");
  const result = $("predict-result");
  let models = []; // metadata of each ready model
  let fields = [];
  let loaded = false;

  function showEmpty(empty) {
    $("predict-empty").hidden = !empty;
    $("predict-body").hidden = empty;
  }

  async function load() {
    const response = await request("/v2/repository/index", { method: "POST", body: "{}",
      headers: { "Content-Type": "application/json" } });
    if (!response.ok) {
      // 404/405: no KServe routes on this server; anything else is worth saying too.
      showEmpty(true);
      if (![404, 405].includes(response.status)) {
        $("predict-empty").querySelector("p").textContent = await errorText(response);
      }
      return;
    }
    const index = await response.json();
    const ready = index.filter((m) => !m.state || m.state === "READY");
    const metas = await Promise.all(ready.map((m) =>
      json(`/v2/models/${encodeURIComponent(m.name)}`).catch(() => null)));
    models = metas.filter(Boolean);
    showEmpty(models.length === 0);
    select.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    if (models.length) build();
  }

  function build() {
    const meta = models.find((m) => m.name === select.value) ?? models[0];
    const task = meta.parameters?.task;
    $("predict-description").textContent = [meta.platform, task,
      `inputs: ${meta.inputs.map((i) => `${i.name} ${i.datatype} [${i.shape.join(", ")}]`).join("; ")}`,
    ].filter(Boolean).join(" · ");
    fields = meta.inputs.map((input) => fieldFor(input, meta));
    $("predict-fields").replaceChildren(...fields.map((f) => f.node));
    result.replaceChildren(el("p", { className: "muted", text: "Fill in the form and press Predict." }));
  }

  select.addEventListener("change", build);
  $("predict-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const meta = models.find((m) => m.name === select.value);
    const button = $("predict-run");
    button.disabled = true;
    result.setAttribute("aria-busy", "true");
    try {
      const inputs = await Promise.all(fields.map((f) => f.read()));
      const answer = await json(`/v2/models/${encodeURIComponent(meta.name)}/infer`, { inputs });
      result.replaceChildren(...renderResult(answer, meta));
      result.dataset.state = "done";
    } catch (err) {
      const message = err instanceof ApiError ? `The server refused: ${err.message}` : err.message;
      result.replaceChildren(el("p", { className: "error", role: "alert", text: message }));
      result.dataset.state = "error";
    } finally {
      button.disabled = false;
      result.removeAttribute("aria-busy");
    }
  });

  return {
    visible(on) {
      if (on && !loaded) {
        loaded = true;
        load().catch((err) => {
          loaded = false;
          showEmpty(true);
          $("predict-empty").querySelector("p").textContent = err.message;
        });
      }
    },
  };
}
