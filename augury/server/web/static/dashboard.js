// Live dashboard: polls /api/stats (each second while visible) into rolling charts, and
// /api/jobs and /api/streams (batch jobs and streaming sessions) into lists.

import { json } from "./api.js";
import { LineChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 1000;
const LISTS_MS = 5000;
const ms = (s) => (s === null || s === undefined ? null : s * 1000);
const pct = (x) => (x === null || x === undefined ? null : x * 100);

function emptyItem(text) {
  const li = document.createElement("li");
  li.className = "empty";
  li.textContent = text;
  return li;
}

/** A batch job: {id, status, completed, total} (fields of the batch feature, when it lands). */
function jobItem(job) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  const done = Number(job.completed ?? job.request_counts?.completed ?? 0);
  const total = Number(job.total ?? job.request_counts?.total ?? 0);
  label.textContent = `${job.id ?? "job"} · ${job.status ?? "?"} · ${done}/${total}`;
  const bar = document.createElement("progress");
  bar.max = total || 1;
  bar.value = done;
  bar.setAttribute("aria-label", `${job.id ?? "job"} progress`);
  li.append(label, bar);
  return li;
}

/** A streaming session: {id, model, events_per_s} (fields of the streaming feature). */
function streamItem(stream) {
  const li = document.createElement("li");
  const rate = Number(stream.events_per_s ?? stream.rate ?? 0);
  li.textContent = `${stream.id ?? "session"}${stream.model ? ` · ${stream.model}` : ""} · ` +
    `${rate.toFixed(1)} events/s`;
  return li;
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
    $("jobs").replaceChildren(...(jobs.data.length ? jobs.data.map(jobItem)
      : [emptyItem("No batch jobs yet. Jobs submitted through the batch API appear here.")]));
    $("streams").replaceChildren(...(streams.data.length ? streams.data.map(streamItem)
      : [emptyItem("No streaming sessions. Open sessions appear here with their rates.")]));
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
