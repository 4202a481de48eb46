/* Metric charts drawn with uPlot: one chart per metric, every chart of a group on the same
 * x-range (step or wall time), hover values in the legend, drag to zoom (all charts follow),
 * double-click or "Reset zoom" to see everything again, TensorBoard's debiased EMA smoothing
 * with the raw line kept faint, a log-scale toggle and NiNo nowcast markers.
 *
 * A group is built on an element with `data-charts`:
 *   data-src="<url>"   the job page: fetch the series, then (while the job is active) only the
 *                      points recorded since, every second; the instance survives htmx swaps
 *                      (the element has hx-preserve), so nothing flickers.
 *   data-inline="<id>" the comparison page: series from a json_script element, drawn once.
 * The element gets a `wsCharts` property (the group) that the browser tests read.
 */
(function () {
  "use strict";

  const MARK_COLOUR = "#9333ea";
  const HEIGHT = 230;
  const POLL_MS = 1000;

  /** TensorBoard's debiased EMA: last = last*w + (1-w)*x, shown as last / (1 - w^t);
   *  null and non-finite values pass through without moving the average. */
  function ema(values, weight) {
    const out = new Array(values.length);
    let last = 0;
    let seen = 0;
    for (let i = 0; i < values.length; i++) {
      const x = values[i];
      if (x == null || !Number.isFinite(x)) {
        out[i] = x;
        continue;
      }
      last = last * weight + (1 - weight) * x;
      seen += 1;
      out[i] = weight === 0 ? x : last / (1 - Math.pow(weight, seen));
    }
    return out;
  }

  /** The splits the axis labels (its filter), for a log scale's grid and ticks. */
  function labelledSplits(u, splits, axisIndex, space, incr) {
    return u.axes[axisIndex].filter(u, splits, axisIndex, space, incr);
  }

  function titleOf(metric) {
    const text = metric.replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function formatNumber(value) {
    if (value == null || !Number.isFinite(value)) return "—";
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(3);
    return Number(value.toPrecision(5)).toString();
  }

  function formatSeconds(seconds) {
    if (seconds == null || !Number.isFinite(seconds)) return "—";
    const sign = seconds < 0 ? "-" : "";
    let rest = Math.abs(seconds);
    const hours = Math.floor(rest / 3600);
    rest -= hours * 3600;
    const minutes = Math.floor(rest / 60);
    const secs = rest - minutes * 60;
    const ss = secs < 10 ? "0" + secs.toFixed(secs % 1 ? 1 : 0) : secs.toFixed(secs % 1 ? 1 : 0);
    return sign + (hours ? hours + ":" + String(minutes).padStart(2, "0") : minutes) + ":" + ss;
  }

  /** Index of the first element >= value in a sorted array. */
  function lowerBound(array, value) {
    let lo = 0;
    let hi = array.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (array[mid] < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function element(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  class ChartGroup {
    constructor(root, options) {
      this.root = root;
      this.src = options.src || null;
      this.markColour = options.markColour || null; // null: each series' own colour
      this.started = options.started || null;
      this.series = new Map(); // [job/]name -> {meta..., steps, values, times}
      this.charts = new Map(); // metric -> {u, figure, names}
      this.smoothing = 0.6;
      this.log = false;
      this.xMode = "step";
      this.zoom = null; // [min, max] or null for everything
      this.cursor = null;
      this.active = false;
      this.syncKey = "ws-charts-" + Math.random().toString(36).slice(2);
      this.build();
      root.wsCharts = this;
    }

    // --- the page around the charts -------------------------------------------------------
    build() {
      const smoothing = element("input", {
        type: "range", min: "0", max: "0.99", step: "0.01", value: String(this.smoothing),
        name: "smoothing", "aria-label": "Smoothing",
      });
      const shown = element("output", { text: this.smoothing.toFixed(2) });
      smoothing.addEventListener("input", () => {
        this.smoothing = Number(smoothing.value);
        shown.textContent = this.smoothing.toFixed(2);
        this.refresh();
      });
      const log = element("input", { type: "checkbox", name: "log" });
      log.addEventListener("change", () => {
        this.log = log.checked;
        this.rebuild();
      });
      const xMode = element("select", { name: "x", "aria-label": "X axis" }, [
        element("option", { value: "step", text: "Step" }),
        element("option", { value: "time", text: "Wall time" }),
      ]);
      xMode.addEventListener("change", () => {
        this.xMode = xMode.value;
        this.zoom = null;
        this.rebuild();
      });
      const reset = element("button", { type: "button", class: "reset", text: "Reset zoom" });
      reset.addEventListener("click", () => this.resetZoom());
      this.controls = element("div", { class: "chart-controls" }, [
        element("label", {}, ["Smoothing ", smoothing, " ", shown]),
        element("label", {}, [log, " Log scale"]),
        element("label", {}, ["X axis ", xMode]),
        reset,
        element("span", { class: "hint muted small", text: "Drag across a chart to zoom; double-click to reset." }),
      ]);
      this.grid = element("div", { class: "chart-grid" });
      this.empty = element("p", { class: "empty" });
      this.notes = element("p", { class: "chart-note muted small" });
      this.root.replaceChildren(this.controls, this.empty, this.grid, this.notes);
      new ResizeObserver(() => this.resize()).observe(this.grid);
    }

    setEmptyText(text) {
      this.emptyText = text;
    }

    // --- data -------------------------------------------------------------------------------
    /** Take a payload ({series: [...]}); incremental payloads add to or overwrite points. */
    ingest(payload) {
      let changed = false;
      if (payload.started) this.started = payload.started;
      for (const entry of payload.series || []) {
        // On the comparison page two jobs have series of the same name: the job tells them apart.
        const key = (entry.job == null ? "" : entry.job + "/") + entry.name;
        entry.key = key;
        const known = this.series.get(key);
        if (!known || !payload.incremental) {
          this.series.set(key, entry);
          changed = changed || !known;
          continue;
        }
        for (let i = 0; i < entry.steps.length; i++) {
          const step = entry.steps[i];
          const at = known.steps.length && step > known.steps[known.steps.length - 1]
            ? known.steps.length : lowerBound(known.steps, step);
          if (known.steps[at] === step) {
            known.values[at] = entry.values[i];
            known.times[at] = entry.times[i];
          } else {
            known.steps.splice(at, 0, step);
            known.values.splice(at, 0, entry.values[i]);
            known.times.splice(at, 0, entry.times[i]);
          }
        }
        known.points = known.steps.length;
      }
      return changed;
    }

    metrics() {
      const names = new Set();
      for (const s of this.series.values()) if (s.metric !== "nowcast") names.add(s.metric);
      // The training loss first, then the evaluations, as on the server.
      return [...names].sort((a, b) =>
        (a.startsWith("train") ? 0 : 1) - (b.startsWith("train") ? 0 : 1) || a.localeCompare(b));
    }

    linesOf(metric) {
      return [...this.series.values()].filter((s) => s.metric === metric);
    }

    /** Wall times, seconds since the job started. Points are written in batches that share
     *  one time; within a batch they are spread evenly back to the previous batch's time. */
    wallTimes(entry) {
      const t0 = this.started || entry.times.find((t) => t != null) || 0;
      const out = new Array(entry.times.length).fill(null);
      let previous = 0;
      let i = 0;
      while (i < entry.times.length) {
        const t = entry.times[i];
        if (t == null) { i++; continue; }
        let j = i;
        while (j + 1 < entry.times.length && entry.times[j + 1] === t) j++;
        const end = t - t0;
        const count = j - i + 1;
        for (let k = 0; k < count; k++) out[i + k] = previous + ((end - previous) * (k + 1)) / count;
        previous = end;
        i = j + 1;
      }
      return out;
    }

    xsOf(entry) {
      return this.xMode === "time" ? this.wallTimes(entry) : entry.steps;
    }

    /** The uPlot data of one chart: x, then per line its raw and its smoothed values. */
    dataOf(metric) {
      const tables = [];
      for (const entry of this.linesOf(metric)) {
        const xs = this.xsOf(entry);
        let values = entry.values.map((v) => (this.log && v != null && v <= 0 ? null : v));
        const keep = xs.map((x) => x != null);
        const x = xs.filter((_, i) => keep[i]);
        values = values.filter((_, i) => keep[i]);
        tables.push([x, values, ema(values, this.smoothing)]);
      }
      if (!tables.length) return [[]];
      return tables.length === 1 ? tables[0] : uPlot.join(tables);
    }

    fullRange() {
      let min = Infinity;
      let max = -Infinity;
      for (const entry of this.series.values()) {
        if (entry.metric === "nowcast") continue;
        const xs = this.xsOf(entry).filter((x) => x != null);
        if (!xs.length) continue;
        min = Math.min(min, xs[0]);
        max = Math.max(max, xs[xs.length - 1]);
      }
      if (!Number.isFinite(min)) return null;
      return max > min ? [min, max] : [min - 1, max + 1];
    }

    /** Nowcast steps as x positions, with the colour to draw each in. */
    marks() {
      const out = [];
      for (const entry of this.series.values()) {
        if (entry.metric !== "nowcast") continue;
        const loss = [...this.series.values()].find((s) => s.run === entry.run && s.metric === "train_loss" && s.job === entry.job);
        for (const step of entry.steps) {
          let x = step;
          if (this.xMode === "time") {
            if (!loss) continue;
            const times = this.wallTimes(loss);
            const at = Math.min(lowerBound(loss.steps, step), loss.steps.length - 1);
            x = times[at];
            if (x == null) continue;
          }
          out.push({ x, colour: this.markColour || entry.colour });
        }
      }
      return out;
    }

    // --- charts -----------------------------------------------------------------------------
    optionsOf(metric, lines) {
      const group = this;
      const series = [{
        label: this.xMode === "time" ? "time" : "step",
        value: (u, v) => (this.xMode === "time" ? formatSeconds(v) : v == null ? "—" : String(Math.round(v))),
      }];
      for (const line of lines) {
        const dash = line.dash ? [6, 4] : undefined;
        series.push({
          label: line.label + " raw", stroke: line.colour + "40", width: 1, dash,
          spanGaps: true, value: (u, v) => formatNumber(v), class: "raw",
        });
        series.push({
          label: line.label, stroke: line.colour, width: 1.75, dash, spanGaps: true,
          value: (u, v) => formatNumber(v),
        });
      }
      return {
        width: Math.max(this.grid.clientWidth - 2, 320),
        height: HEIGHT,
        series,
        scales: { x: { time: false }, y: { distr: this.log ? 3 : 1 } },
        axes: [
          {
            label: this.xMode === "time" ? "wall time (m:ss since start)" : "step",
            values: this.xMode === "time" ? (u, splits) => splits.map(formatSeconds) : undefined,
            grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d1d5db" },
          },
          {
            // On a log scale uPlot labels only some splits (null for the others): the grid
            // and ticks follow the labels, so four decades do not become a solid block.
            values: (u, splits) => splits.map((v) => (v == null ? "" : formatNumber(v))),
            size: 60,
            // (No filter key at all on a linear scale: an undefined one replaces uPlot's default.)
            grid: { stroke: "#eef0f3", ...(this.log ? { filter: labelledSplits } : {}) },
            ticks: { stroke: "#d1d5db", ...(this.log ? { filter: labelledSplits } : {}) },
          },
        ],
        legend: { live: true },
        cursor: {
          sync: { key: this.syncKey },
          drag: { x: true, y: false, setScale: false },
          bind: { dblclick: () => () => { group.resetZoom(); return null; } },
        },
        hooks: {
          setSelect: [(u) => {
            if (u.select.width > 4) {
              const min = u.posToVal(u.select.left, "x");
              const max = u.posToVal(u.select.left + u.select.width, "x");
              group.zoomTo(min, max);
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          }],
          draw: [(u) => group.drawMarks(u)],
        },
      };
    }

    drawMarks(u) {
      const marks = this.marks();
      if (!marks.length) return;
      const { ctx, bbox } = u;
      ctx.save();
      ctx.lineWidth = Math.max(1, devicePixelRatio);
      ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
      for (const mark of marks) {
        const x = Math.round(u.valToPos(mark.x, "x", true));
        if (x < bbox.left || x > bbox.left + bbox.width) continue;
        ctx.strokeStyle = mark.colour + (this.markColour ? "" : "99");
        ctx.beginPath();
        ctx.moveTo(x, bbox.top);
        ctx.lineTo(x, bbox.top + bbox.height);
        ctx.stroke();
      }
      ctx.restore();
    }

    /** Draw from scratch (the log scale or the x axis changed). */
    rebuild() {
      for (const chart of this.charts.values()) chart.u.destroy();
      this.charts.clear();
      this.grid.replaceChildren();
      this.refresh();
    }

    /** New points or a new smoothing: the same charts get new data (no flicker); a chart is
     *  made only for a new metric, or remade when a line joins it (a second run starts). */
    refresh() {
      const metrics = this.metrics();
      for (const [metric, chart] of this.charts) {
        if (!metrics.includes(metric)) {
          chart.u.destroy();
          chart.figure.remove();
          this.charts.delete(metric);
        }
      }
      let previous = null;
      for (const metric of metrics) {
        const lines = this.linesOf(metric);
        const names = lines.map((l) => l.key).join("|");
        let chart = this.charts.get(metric);
        if (chart && chart.names !== names) {
          chart.u.destroy();
          chart.figure.remove();
          chart = null;
        }
        if (chart) {
          chart.u.setData(this.dataOf(metric), false);
        } else {
          const plot = element("div", { class: "chart-plot" });
          const figure = element("figure", { class: "chart-card", "data-metric": metric }, [
            element("h4", { text: titleOf(metric) + (this.log ? " (log scale)" : "") }), plot,
          ]);
          if (previous) previous.after(figure);
          else this.grid.prepend(figure);
          const u = new uPlot(this.optionsOf(metric, lines), this.dataOf(metric), plot);
          chart = { u, figure, names };
          this.charts.set(metric, chart);
        }
        previous = chart.figure;
      }
      // Keep the map in page order (the tests and the range sync read it).
      this.charts = new Map(metrics.map((m) => [m, this.charts.get(m)]));
      this.applyRange();
      this.describe();
    }

    applyRange() {
      const range = this.zoom || this.fullRange();
      if (!range) return;
      for (const chart of this.charts.values()) {
        chart.u.setScale("x", { min: range[0], max: range[1] });
      }
    }

    zoomTo(min, max) {
      if (!(max > min)) return;
      this.zoom = [min, max];
      this.applyRange();
    }

    resetZoom() {
      this.zoom = null;
      this.applyRange();
    }

    resize() {
      const width = Math.max(this.grid.clientWidth - 2, 320);
      for (const chart of this.charts.values()) {
        if (Math.abs(chart.u.width - width) > 1) chart.u.setSize({ width, height: HEIGHT });
      }
    }

    describe() {
      const any = this.charts.size > 0;
      this.controls.hidden = !any;
      this.empty.hidden = any;
      this.empty.textContent = this.emptyText || "No metric series.";
      const notes = [];
      if (this.marks().length) notes.push(this.note || "");
      const thinned = [...this.series.values()].filter((s) => s.factor > 1);
      for (const s of thinned) {
        notes.push(`${s.label} ${s.metric.replace(/_/g, " ")}: every ${s.factor}th of ${s.points.toLocaleString()} points drawn (the downloads and the API have all of them).`);
      }
      if (this.xMode === "time") notes.push("Wall time: points are written in batches; steps within a batch are spread evenly between two writes.");
      this.notes.textContent = notes.filter(Boolean).join(" ");
      this.notes.hidden = !notes.length;
    }

    // --- live updates -----------------------------------------------------------------------
    async poll() {
      const url = new URL(this.src, location.href);
      if (this.cursor) url.searchParams.set("after", this.cursor);
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) {
          const payload = await response.json();
          this.note = payload.note;
          this.ingest(payload);
          if (payload.cursor) this.cursor = payload.cursor;
          this.active = payload.active;
          if (!payload.active && !this.series.size) this.emptyText = this.root.dataset.emptyDone || this.emptyText;
          this.refresh();
        } else if (response.status === 404 || response.status === 403) {
          this.active = false; // the job is gone (deleted) or the session ended
        }
      } catch (error) {
        // A missed poll is retried on the next tick; the page keeps what it has.
      }
      if (this.active && this.root.isConnected) setTimeout(() => this.poll(), POLL_MS);
    }
  }

  function start(root) {
    if (root.wsCharts) return root.wsCharts;
    const group = new ChartGroup(root, { markColour: root.dataset.markColour || null });
    group.emptyText = root.dataset.empty || "No metric series.";
    if (root.dataset.inline) {
      const payload = JSON.parse(document.getElementById(root.dataset.inline).textContent);
      group.note = payload.note;
      group.ingest(payload);
      group.rebuild();
    } else if (root.dataset.src) {
      group.src = root.dataset.src;
      group.active = true; // until the first answer says otherwise (a failed fetch retries)
      group.describe();
      group.poll();
    }
    return group;
  }

  window.WeightspaceCharts = { ema, start, ChartGroup };
  const startAll = () => document.querySelectorAll("[data-charts]").forEach(start);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
  // A page part swapped in by htmx may bring a chart group the first load did not have.
  document.addEventListener("htmx:afterSettle", startAll);
})();
