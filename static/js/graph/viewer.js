// The architecture page's graph viewer: loads the viewer JSON, folds by module, lays out in
// a Web Worker (elkjs), renders (SVG or canvas), and handles pan, zoom, search and the
// properties panel. The container's data-state ("loading", "laying-out", "ready", "error")
// and data-boxes tell what is on screen (the browser tests and the benchmark read them).

import { Folding, groupsOf, prefixes, search, visibleGraph } from "./model.js";
import { Layouter } from "./layout.js";
import { CANVAS_FROM, CanvasRenderer, SvgRenderer } from "./render.js";

const MIN_K = 0.02;
const MAX_K = 4;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const number = (n) => n.toLocaleString("en-US");
const shape = (s) => (Array.isArray(s) ? s.join("×") : "—");

class Viewer {
  constructor(root) {
    this.root = root;
    this.stage = root.querySelector(".gv-stage");
    this.status = root.querySelector(".gv-status");
    this.panel = root.querySelector(".gv-panel");
    this.layouter = new Layouter(root.dataset.worker);
    this.transform = { x: 0, y: 0, k: 1 };
    this.renderer = null;
    this.matches = [];
    this.current = -1;
    this.selected = null;
    this.timings = {};
  }

  async start() {
    this.setState("loading", "Loading the graph…");
    let response;
    try {
      response = await fetch(this.root.dataset.url, { credentials: "same-origin" });
    } catch (error) {
      return this.setState("error", "The graph could not be loaded: " + error.message);
    }
    if (!response.ok) return this.setState("error", "The graph could not be loaded (" + response.status + ").");
    this.doc = await response.json();
    const names = Object.keys(this.doc.views);
    if (!names.length) return this.setState("error", "This inspection stored no graph to draw.");
    this.buildViewButtons(names);
    this.bindControls();
    await this.showView(this.doc.default_view);
  }

  setState(state, message) {
    this.root.dataset.state = state;
    this.status.textContent = message || "";
    this.status.hidden = !message;
  }

  buildViewButtons(names) {
    const box = this.root.querySelector(".gv-views");
    box.replaceChildren();
    for (const name of names) {
      const view = this.doc.views[name];
      box.append(
        h("button", {
          type: "button", class: "gv-view", "data-view": name, "aria-pressed": "false",
          onclick: () => this.showView(name),
        }, `${view.title} · ${number(view.nodes.length)} nodes, ${number(view.edges.length)} edges`),
      );
    }
  }

  async showView(name) {
    this.viewName = name;
    this.view = this.doc.views[name];
    this.groups = groupsOf(this.view);
    this.folding = new Folding(this.view.depth ?? Infinity);
    for (const button of this.root.querySelectorAll(".gv-view")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === name));
    }
    this.root.querySelector(".gv-about").textContent = this.view.about;
    this.fillDepths();
    this.selected = null;
    this.showHelp();
    await this.relayout({ fit: true });
    this.runSearch();
  }

  fillDepths() {
    const select = this.root.querySelector(".gv-depth");
    let deepest = 0;
    for (const group of this.groups.values()) deepest = Math.max(deepest, group.depth);
    select.replaceChildren(h("option", { value: "all", text: "none (every node)" }));
    for (let d = 1; d <= deepest; d++) {
      select.append(h("option", { value: String(d), text: d === 1 ? "1 (top modules)" : String(d) }));
    }
    select.value = Number.isFinite(this.folding.foldAt) ? String(this.folding.foldAt) : "all";
  }

  bindControls() {
    if (this.bound) return;
    this.bound = true;
    const $ = (selector) => this.root.querySelector(selector);
    $(".gv-depth").addEventListener("change", (event) => {
      const value = event.target.value;
      this.folding.setDepth(value === "all" ? Infinity : Number(value));
      this.relayout({ fit: true });
    });
    $(".gv-zoom-in").addEventListener("click", () => this.userZoom(1.25));
    $(".gv-zoom-out").addEventListener("click", () => this.userZoom(0.8));
    $(".gv-fit").addEventListener("click", () => this.fit());
    const input = $(".gv-search");
    input.addEventListener("input", () => this.runSearch());
    $(".gv-mode").addEventListener("change", () => this.runSearch());
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.jump(event.shiftKey ? -1 : 1);
      }
    });
    $(".gv-next").addEventListener("click", () => this.jump(1));
    $(".gv-prev").addEventListener("click", () => this.jump(-1));
    this.bindPointer();
    new ResizeObserver(() => this.renderer && this.renderer.resize()).observe(this.stage);
  }

  bindPointer() {
    let drag = null;
    this.stage.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, tx: this.transform.x, ty: this.transform.y, moved: false };
      this.stage.setPointerCapture(event.pointerId);
    });
    this.stage.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) {
        this.userMoved = true;
        this.stage.classList.add("dragging");
        this.setTransform({ ...this.transform, x: drag.tx + dx, y: drag.ty + dy });
      }
    });
    this.stage.addEventListener("pointerup", (event) => {
      const was = drag;
      drag = null;
      this.stage.classList.remove("dragging");
      if (was && !was.moved && this.renderer) this.clickAt(event);
    });
    this.stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = this.stage.getBoundingClientRect();
      const factor = Math.exp(-event.deltaY * 0.0015);
      this.userZoom(factor, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    // Keyboard: arrows pan, + and − zoom, 0 fits.
    const steps = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] };
    this.stage.addEventListener("keydown", (event) => {
      if (steps[event.key]) {
        const [dx, dy] = steps[event.key];
        this.userMoved = true;
        this.setTransform({ ...this.transform, x: this.transform.x + dx, y: this.transform.y + dy });
      } else if (event.key === "+" || event.key === "=") this.userZoom(1.25);
      else if (event.key === "-") this.userZoom(0.8);
      else if (event.key === "0") this.fit();
      else return;
      event.preventDefault();
    });
    this.stage.addEventListener("dblclick", (event) => {
      const key = this.renderer && this.renderer.keyAt(event);
      if (key && key.startsWith("g:")) this.openGroup(key.slice(2));
    });
  }

  clickAt(event) {
    const key = this.renderer.keyAt(event);
    if (!key) return;
    this.select(key);
    const box = this.scene.boxes.get(key);
    if (box && box.folded) this.openGroup(box.group.path);
  }

  // ------------------------------------------------------------------ layout and drawing

  async relayout({ fit = false, focus = null } = {}) {
    const visible = visibleGraph(this.view, this.folding, this.groups);
    const count = visible.boxes.size;
    this.userMoved = false; // a zoom or pan during the layout wins over the automatic fit
    this.setState("laying-out", `Laying out ${number(count)} boxes and ${number(visible.edges.length)} edges…`);
    this.root.dataset.boxes = String(count);
    let laid;
    try {
      laid = await this.layouter.layout(visible);
    } catch (error) {
      return this.setState("error", "Layout failed: " + error.message);
    }
    if (!laid) return; // superseded by a newer layout
    const started = performance.now();
    // ?renderer=svg|canvas overrides the choice (bench/graph_layout.py compares the two).
    const forced = new URLSearchParams(location.search).get("renderer");
    const wanted = forced === "svg" || forced === "canvas" ? forced : count >= CANVAS_FROM ? "canvas" : "svg";
    if (!this.renderer || this.renderer.kind !== wanted) {
      if (this.renderer) this.renderer.destroy();
      this.renderer = wanted === "canvas" ? new CanvasRenderer(this.stage) : new SvgRenderer(this.stage);
    }
    this.scene = { ...visible, ...laid };
    this.renderer.draw(this.scene);
    this.root.dataset.renderer = wanted;
    if (fit && !this.userMoved) this.fit(false);
    else this.renderer.setTransform(this.transform);
    this.highlight();
    if (this.selected && this.scene.boxes.has(this.selected)) this.renderer.mark(this.selected, "selected", true);
    if (focus != null) this.centerOn(focus);
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    this.timings = { layout_s: laid.seconds, render_s: (performance.now() - started) / 1000, boxes: count, edges: visible.edges.length };
    this.root.dataset.layoutSeconds = laid.seconds.toFixed(3);
    this.root.dataset.renderSeconds = this.timings.render_s.toFixed(3);
    this.setState("ready", "");
  }

  setTransform(t) {
    this.transform = { x: t.x, y: t.y, k: Math.min(MAX_K, Math.max(MIN_K, t.k)) };
    if (this.renderer) this.renderer.setTransform(this.transform);
    this.root.querySelector(".gv-scale").textContent = Math.round(this.transform.k * 100) + "%";
  }

  userZoom(factor, cx, cy) {
    this.userMoved = true;
    this.zoomBy(factor, cx, cy);
  }

  zoomBy(factor, cx, cy) {
    const rect = this.stage.getBoundingClientRect();
    const px = cx ?? rect.width / 2;
    const py = cy ?? rect.height / 2;
    const { x, y, k } = this.transform;
    const nk = Math.min(MAX_K, Math.max(MIN_K, k * factor));
    // Keep the point under the cursor where it is.
    this.setTransform({ k: nk, x: px - ((px - x) / k) * nk, y: py - ((py - y) / k) * nk });
  }

  fit(whole = true) {
    if (!this.scene) return;
    const rect = this.stage.getBoundingClientRect();
    const w = this.scene.width || 1;
    const hgt = this.scene.height || 1;
    let k = Math.max(MIN_K, Math.min(rect.width / (w + 40), rect.height / (hgt + 40), 1.2));
    // First view of a tall graph: fit the width and start at the top, readable, rather than
    // shrinking the whole column to a sliver ("Fit" shows it whole).
    if (!whole && k < 0.5 && hgt > 3 * w) k = Math.min(1, rect.width / (w + 40));
    const x = (rect.width - w * k) / 2;
    const y = hgt * k + 40 < rect.height ? (rect.height - hgt * k) / 2 : 20;
    this.setTransform({ x, y, k });
  }

  centerOn(key) {
    const at = this.scene.positions.get(key);
    if (!at) return;
    const rect = this.stage.getBoundingClientRect();
    const k = Math.max(this.transform.k, 0.8);
    this.setTransform({
      k,
      x: rect.width / 2 - (at.x + at.width / 2) * k,
      y: rect.height / 2 - (at.y + at.height / 2) * k,
    });
  }

  openGroup(path) {
    this.folding.open(path);
    this.selected = null;
    return this.relayout({ focus: null });
  }

  foldGroup(path) {
    this.folding.close(path);
    this.selected = "g:" + path;
    return this.relayout({ focus: "g:" + path }).then(() => this.showGroup(this.groups.get(path)));
  }

  // ------------------------------------------------------------------ search

  runSearch() {
    if (!this.view) return;
    const mode = this.root.querySelector(".gv-mode").value;
    const query = this.root.querySelector(".gv-search").value;
    const result = search(this.view, mode, query);
    this.matches = result.ids;
    this.current = -1;
    const count = this.root.querySelector(".gv-count");
    if (result.error) count.textContent = result.error;
    else if (!query.trim()) count.textContent = "";
    else count.textContent = this.matches.length ? `${number(this.matches.length)} matches` : "no match";
    this.highlight();
  }

  highlight() {
    if (!this.renderer || !this.scene) return;
    this.renderer.clearMarks("hit");
    this.renderer.clearMarks("current");
    for (const id of this.matches) this.renderer.mark(this.scene.keyOfNode[id], "hit", true);
    if (this.current >= 0) {
      this.renderer.mark(this.scene.keyOfNode[this.matches[this.current]], "current", true);
    }
  }

  async jump(step) {
    if (!this.matches.length) return;
    this.current = (this.current + step + this.matches.length) % this.matches.length;
    const node = this.view.nodes[this.matches[this.current]];
    this.root.querySelector(".gv-count").textContent = `${this.current + 1} of ${number(this.matches.length)}`;
    const key = "n:" + node.id;
    if (this.scene.keyOfNode[node.id] !== key) {
      this.folding.reveal(node); // the match sits in a folded module: open it first
      this.selected = key;
      await this.relayout({ focus: key });
    } else {
      this.highlight();
      this.centerOn(key);
    }
    this.select(key);
  }

  // ------------------------------------------------------------------ properties panel

  select(key) {
    if (this.selected) this.renderer.mark(this.selected, "selected", false);
    this.selected = key;
    this.renderer.mark(key, "selected", true);
    const box = this.scene.boxes.get(key);
    if (!box) return;
    if (box.folded) this.showGroup(box.group);
    else this.showNode(box.node);
  }

  fillPanel(...children) {
    this.panel.replaceChildren(...children.filter((child) => child != null));
  }

  showHelp() {
    this.panel.replaceChildren(
      h("p", { class: "muted", text: "Click a node for its module path, parameters and shapes. Click a folded box (▸) to open it." }),
    );
  }

  showGroup(group) {
    const ops = [...group.ops.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
    this.panel.replaceChildren(
      h("h3", { text: "Module (folded)" }),
      h("p", { class: "mono gv-path", text: group.path }),
      h("dl", { class: "facts" },
        h("dt", { text: "Nodes" }), h("dd", { text: number(group.count) }),
        h("dt", { text: "Parameters" }), h("dd", { text: number(group.params) }),
        h("dt", { text: "Ops" }), h("dd", { text: ops.map(([op, n]) => `${n} × ${op}`).join(", ") })),
      h("button", { type: "button", class: "primary gv-open", onclick: () => this.openGroup(group.path) }, "Open this module"),
    );
  }

  showNode(node) {
    const total = node.params.reduce((sum, p) => sum + p.numel, 0);
    // Tensor names relative to the module path shown above ("weight", "out_proj.bias").
    const own = node.path + ".";
    // Weight statistics of the newest attached checkpoint that has them (safetensors scan).
    const stats = this.doc.weight_stats && this.doc.weight_stats.tensors;
    const statText = (name) => {
      const s = stats && stats[name];
      if (!s) return "—";
      const f = (x) => (x == null ? "?" : Number(x).toPrecision(3));
      return `μ ${f(s.mean)} σ ${f(s.std)} [${f(s.min)}, ${f(s.max)}]` + (s.nonfinite ? ` · ${s.nonfinite} NaN/inf` : "");
    };
    const rows = node.params.map((p) =>
      h("tr", {},
        h("td", { class: "mono", title: p.name, text: p.name.startsWith(own) ? p.name.slice(own.length) : p.name }),
        h("td", { class: "mono", text: shape(p.shape) }),
        h("td", { class: "num", text: number(p.numel) }),
        h("td", { text: p.nino == null ? "—" : p.nino ? "in graph" : "not read" })),
    );
    const own_name = (name) => (name.startsWith(own) ? name.slice(own.length) : name);
    const statLines = stats
      ? node.params.filter((p) => stats[p.name]).map((p) =>
          h("p", { class: "gv-stats" }, h("span", { class: "mono", text: own_name(p.name) + ": " }), statText(p.name)))
      : [];
    const coverage = this.doc.param_graph && this.doc.param_graph.coverage;
    const left = coverage && coverage.left ? coverage.left.filter((row) => node.params.some((p) => p.name === row.name)) : [];
    const folds = prefixes(node.group).map((path) =>
      h("button", { type: "button", class: "gv-fold-btn", "data-path": path, onclick: () => this.foldGroup(path) }, "Fold " + path),
    );
    const attrs = Object.entries(node.attrs || {}).filter(([, v]) => v !== "" && v != null);
    this.fillPanel(
      h("h3", { text: node.label }),
      h("p", { class: "mono gv-path", text: node.path }),
      h("dl", { class: "facts" },
        h("dt", { text: "Operation" }), h("dd", { class: "mono", text: node.op }),
        h("dt", { text: "Node" }), h("dd", { text: node.kind }),
        h("dt", { text: "Output" }), h("dd", { class: "mono", text: shape(node.out) }),
        h("dt", { text: "GHN primitive" }), h("dd", { class: "mono", text: node.ghn.length ? node.ghn.join(", ") : this.doc.views.ghn ? "— (folded by the GHN graph)" : "— (no GHN graph stored)" }),
        ...attrs.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { class: "mono", text: String(v) })]),
        h("dt", { text: "Parameters" }), h("dd", { text: number(total) })),
      node.params.length
        ? h("table", { class: "table gv-params" },
            h("thead", {}, h("tr", {}, h("th", { text: "Tensor" }), h("th", { text: "Shape" }), h("th", { class: "num", text: "Count" }), h("th", { text: "NiNo" }))),
            h("tbody", {}, ...rows))
        : h("p", { class: "muted", text: "No parameters." }),
      statLines.length ? h("div", { class: "gv-weights" },
        h("h4", { text: "Weights in checkpoint “" + this.doc.weight_stats.checkpoint.name + "”" }), ...statLines) : null,
      left.length ? h("p", { class: "warning small", text: "Left to the base optimizer: " + left.map((r) => `${r.name} (${r.reason})`).join("; ") }) : null,
      folds.length ? h("div", { class: "gv-folds" }, ...folds) : null,
    );
  }
}

for (const root of document.querySelectorAll(".gv")) {
  const viewer = new Viewer(root);
  root.viewer = viewer; // for the benchmark and the browser tests
  viewer.start();
}
