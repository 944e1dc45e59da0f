// Live dashboard: polls /api/stats (each second while visible) into rolling charts, and
// /api/jobs and /api/streams (batch jobs with progress bars, streaming sessions with their
// rates) into tables.

import { json } from "./api.js";
import { LineChart } from "./chart.js";
import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 1000;
const LISTS_MS = Math.max(POLL_MS, 2000); // batch jobs and streaming sessions
const ms = (s) => (s === null || s === undefined ? null : s * 1000);
const pct = (x) => (x === null || x === undefined ? null : x * 100);

const rate = (x) => (x === null || x === undefined ? "–" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const count = (n) => Number(n).toLocaleString();
const clock = (unix) => (unix ? new Date(unix * 1000).toLocaleTimeString() : "–");

function duration(seconds) {
  if (seconds === null || seconds < 0) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** A table: columns are [header, cell(item) -> Node|string, numeric?]. */
function table(caption, columns, items, rowProps) {
  const head = el("tr", {}, ...columns.map(([name, , num]) =>
    el("th", { scope: "col", className: num ? "num" : "", text: name })));
  const rows = items.map((item) => el("tr", rowProps(item), ...columns.map(([, cell, num]) =>
    el("td", { className: num ? "num" : "" }, cell(item)))));
  return el("table", { className: "items" }, el("caption", { className: "visually-hidden", text: caption }),
    el("thead", {}, head), el("tbody", {}, ...rows));
}

const badge = (state) => el("span", { className: "state", "data-state": state, text: state.replace("_", " ") });

function jobProgress(job) {
  const { total, completed, failed } = job.request_counts;
  const done = completed + failed;
  const bar = el("progress", { max: String(total || 1), "aria-label": `Progress of ${job.id}` });
  bar.value = job.progress === null ? 0 : done;
  // Indeterminate while the total is unknown (validating); a batch that stopped shows as is.
  if (job.progress === null && !job.finished_at) bar.removeAttribute("value");
  const percent = job.progress === null ? "–" : `${Math.round(job.progress * 100)}%`;
  bar.setAttribute("aria-valuetext", `${done} of ${total} requests (${percent})`);
  const text = `${count(done)}/${count(total)}${failed ? ` · ${count(failed)} failed` : ""}`;
  return el("div", { className: "progress" }, bar, el("span", { className: "count", text }));
}

function jobsTable(jobs, now) {
  const columns = [
    ["Batch", (j) => el("code", { text: j.id, title: `${j.id} · ${j.endpoint}` })],
    ["Status", (j) => {
      const b = badge(j.status);
      if (j.error) b.title = j.error;
      return b;
    }],
    ["Progress", jobProgress],
    ["Rows/s", (j) => rate(j.rows_per_s), true],
    ["Created", (j) => clock(j.created_at)],
    ["Time", (j) => (j.in_progress_at ? duration((j.finished_at ?? now) - j.in_progress_at) : "–"), true],
  ];
  return table("Batch jobs", columns, jobs.data, (j) => ({ "data-id": j.id, "data-status": j.status }));
}

function streamsTable(streams) {
  const columns = [
    ["Session", (s) => el("code", { text: s.id, title: `${s.id} · key ${s.key_name}` })],
    ["Model", (s) => `${s.model} (${s.channels.join(", ")})`],
    ["State", (s) => badge(s.state)],
    ["Events in", (s) => count(s.events_in), true],
    ["Results out", (s) => count(s.results_out), true],
    ["Dropped", (s) => count(s.queue_dropped), true],
    ["Late", (s) => count(s.late_dropped), true],
    ["Events/s", (s) => rate(s.events_per_s), true],
    ["Results/s", (s) => rate(s.results_per_s), true],
  ];
  return table("Streaming sessions", columns, streams.data, (s) => ({ "data-id": s.id, "data-state": s.state }));
}

export function initDashboard() {
  const status = $("dash-status");
  const select = $("dash-model");
  const parent = $("charts");
  const charts = {
    throughput: new LineChart(parent, {
      title: "Throughput", unit: "tok/s", series: ["generated", "prompt"],
    }),
    ttft: new LineChart(parent, {
      title: "Time to first token", unit: "ms", series: ["p50", "p90", "p99"],
    }),
    itl: new LineChart(parent, {
      title: "Inter-token latency", unit: "ms", series: ["p50", "p90", "p99"],
    }),
    requests: new LineChart(parent, {
      title: "Requests", unit: "", series: ["running", "waiting"],
      format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
    }),
    kv: new LineChart(parent, { title: "KV cache usage", unit: "%", series: ["used"], max: 100 }),
    prefix: new LineChart(parent, {
      title: "Prefix-cache hit rate", unit: "%", series: ["hits"], max: 100,
    }),
  };
  const rateBox = document.createElement("div");
  rateBox.className = "chart-slot";
  parent.append(rateBox);
  let rates = null; // per-model request rates: rebuilt when the set of models changes
  let visible = false;
  let timer = null;
  let lastLists = 0;

  function update(stats) {
    const names = stats.models.map((m) => m.model);
    if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
      const current = select.value;
      select.replaceChildren(...names.map((n) => new Option(n, n)));
      if (names.includes(current)) select.value = current;
    }
    if (!rates || rates.series.join() !== names.join()) {
      rateBox.replaceChildren();
      rates = new LineChart(rateBox, {
        title: "Request rate per model", unit: "req/s", series: names.length ? names : ["–"],
        format: (v) => v.toFixed(2),
      });
    }
    rates.push(stats.models.map((m) => m.requests_per_s));
    const m = stats.models.find((x) => x.model === select.value);
    if (!m) {
      status.textContent = stats.ready ? "No generation models." : "Models are loading…";
      return;
    }
    charts.throughput.push([m.generation_tokens_per_s, m.prompt_tokens_per_s]);
    charts.ttft.push([ms(m.ttft.p50), ms(m.ttft.p90), ms(m.ttft.p99)]);
    charts.itl.push([ms(m.itl.p50), ms(m.itl.p90), ms(m.itl.p99)]);
    charts.requests.push([m.running, m.waiting]);
    charts.kv.push([pct(m.kv_usage)]);
    charts.prefix.push([pct(m.prefix_cache_hit_rate)]);
    const time = new Date(stats.time * 1000).toLocaleTimeString();
    status.textContent = `Updated ${time} · ${m.steps_total} steps · ` +
      `${m.preemptions_total} preemptions · latencies over the last ${stats.window_s} s`;
  }

  async function updateLists() {
    const [jobs, streams] = await Promise.all([json("/api/jobs"), json("/api/streams")]);
    const now = Date.now() / 1000;
    const jobNote = jobs.total > jobs.data.length
      ? [el("p", { className: "note", text: `The newest ${jobs.data.length} of ${jobs.total} batches shown.` })] : [];
    $("jobs").replaceChildren(...(jobs.data.length ? [jobsTable(jobs, now), ...jobNote]
      : [el("p", { className: "empty", text: jobs.enabled
        ? "No batch jobs yet. Jobs submitted through the batch API (/v1/batches) appear here."
        : "No batch jobs: the Batch API is off on this server (no batch folder configured)." })]));
    const streamNote = streams.total > streams.data.length
      ? [el("p", { className: "note", text: `${streams.data.length} of ${streams.total} sessions shown.` })] : [];
    $("streams").replaceChildren(...(streams.data.length ? [streamsTable(streams), ...streamNote]
      : [el("p", { className: "empty",
        text: "No streaming sessions. Sessions opened on /v1/streams appear here with their rates." })]));
  }

  async function poll() {
    timer = null;
    if (!visible || document.hidden) return;
    try {
      update(await json("/api/stats"));
      if (Date.now() - lastLists >= LISTS_MS) {
        lastLists = Date.now();
        await updateLists();
      }
    } catch (err) {
      status.textContent = `Stats unavailable: ${err.message}`;
    }
    if (visible && timer === null) timer = setTimeout(poll, POLL_MS);
  }

  function restart() {
    clearTimeout(timer);
    timer = null;
    poll();
  }

  document.addEventListener("visibilitychange", restart);
  select.addEventListener("change", restart);
  return {
    visible(on) {
      visible = on;
      if (on) {
        lastLists = 0;
        restart();
        Object.values(charts).forEach((c) => c.draw());
      }
    },
  };
}
