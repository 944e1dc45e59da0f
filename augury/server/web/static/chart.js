// A small line chart on a canvas: a rolling window of points per series, y axis from zero,
// a legend with each series' latest value (the text screen readers and tests read).

const PALETTE = ["#3553c4", "#d9480f", "#2b8a3e", "#ae3ec9", "#1098ad", "#f59f00", "#495057"];

export class LineChart {
  /**
   * @param {HTMLElement} parent where the chart's <figure> goes
   * @param {{title: string, unit: string, series: string[], format?: (v: number) => string,
   *          max?: number, points?: number}} options
   */
  constructor(parent, { title, unit, series, format, max, points = 120 }) {
    this.unit = unit;
    this.series = series;
    this.format = format ?? ((v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)));
    this.fixedMax = max;
    this.capacity = points;
    this.data = series.map(() => []); // per series: values (null = no data)
    this.pushes = 0;

    this.figure = document.createElement("figure");
    this.figure.className = "chart";
    const caption = document.createElement("figcaption");
    const heading = document.createElement("h3");
    heading.textContent = title;
    this.legend = document.createElement("ul");
    this.legend.className = "legend";
    this.values = series.map((name, i) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = PALETTE[i % PALETTE.length];
      const value = document.createElement("span");
      value.className = "value";
      value.dataset.series = name;
      value.textContent = "–";
      item.append(swatch, `${name} `, value);
      this.legend.append(item);
      return value;
    });
    caption.append(heading, this.legend);
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", `${title}: no data yet`);
    this.title = title;
    this.figure.append(caption, this.canvas);
    parent.append(this.figure);
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  /** Append one point per series (null where a series has no value now) and redraw. */
  push(values) {
    values.forEach((v, i) => {
      const list = this.data[i];
      list.push(Number.isFinite(v) ? v : null);
      if (list.length > this.capacity) list.shift();
      this.values[i].textContent = Number.isFinite(v) ? `${this.format(v)} ${this.unit}` : "–";
    });
    this.pushes += 1;
    this.figure.dataset.points = String(this.pushes);
    const summary = this.series
      .map((s, i) => `${s} ${this.values[i].textContent}`)
      .join(", ");
    this.canvas.setAttribute("aria-label", `${this.title}, latest: ${summary}`);
    this.draw();
  }

  draw() {
    const css = this.canvas.getBoundingClientRect();
    if (css.width === 0) return; // hidden tab: drawn when shown
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(css.width * ratio);
    const height = Math.round(css.height * ratio);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, css.width, css.height);
    const style = getComputedStyle(this.canvas);
    const ink = style.getPropertyValue("--chart-ink").trim() || "#555";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#ddd";

    const all = this.data.flat().filter((v) => v !== null);
    const top = this.fixedMax ?? niceMax(Math.max(0, ...all));
    const pad = { left: 44, right: 8, top: 8, bottom: 8 };
    const w = css.width - pad.left - pad.right;
    const h = css.height - pad.top - pad.bottom;
    const y = (v) => pad.top + h - (v / top) * h;
    const x = (i) => pad.left + (i / Math.max(1, this.capacity - 1)) * w;

    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 1;
    for (const frac of [0, 0.5, 1]) {
      const v = top * frac;
      ctx.strokeStyle = grid;
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(v)) + 0.5);
      ctx.lineTo(pad.left + w, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = ink;
      ctx.fillText(this.format(v), pad.left - 6, y(v));
    }

    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    this.data.forEach((list, s) => {
      ctx.strokeStyle = PALETTE[s % PALETTE.length];
      ctx.beginPath();
      const offset = this.capacity - list.length; // newest point at the right edge
      let drawing = false;
      list.forEach((v, i) => {
        if (v === null) {
          drawing = false;
          return;
        }
        const px = x(offset + i);
        const py = y(Math.min(v, top));
        if (drawing) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        drawing = true;
      });
      ctx.stroke();
      const lastValue = list[list.length - 1];
      if (lastValue !== null && lastValue !== undefined) {
        // The newest point as a dot: visible even before there is a line to draw.
        ctx.fillStyle = ctx.strokeStyle;
        ctx.beginPath();
        ctx.arc(x(this.capacity - 1), y(Math.min(lastValue, top)), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
  }
}

/** A round number at or above `v` (1, 2, 5 x 10^k), so axis labels read well. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (step * power >= v) return step * power;
  return 10 * power;
}
