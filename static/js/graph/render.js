// Two renderers with one interface: SVG for graphs a person reads node by node, canvas with
// viewport culling for the big ones (thousands of SVG elements make every pan repaint slowly).
// Both draw laid-out boxes and routed edges with arrowheads, in three edge styles.

const SVG_NS = "http://www.w3.org/2000/svg";
export const CANVAS_FROM = 1500; // boxes; measured in bench/graph_layout.py

// Ops that combine inputs (residuals, concatenations, attention): drawn amber.
const MERGES = new Set([
  "add", "cat", "sum", "concat", "stack", "msa", "mul", "matmul", "bmm", "cse", "se",
  "scaled_dot_product_attention", "MultiheadAttention", "einsum",
]);
const EDGE_COLOURS = { main: "#6b7280", skip: "#7c3aed", branch: "#d97706" };

/** A box's style class from what it is: folded module, input/output, merge, has params. */
export function boxClass(box) {
  if (box.folded) return "box";
  const node = box.node;
  if (node.kind === "input" || node.kind === "output" || node.op === "input") return "io";
  if (MERGES.has(node.op)) return "merge";
  if (node.params.length) return "params";
  return "plain";
}

function el(name, attrs) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function pathOf(points) {
  return points.map((p, i) => (i ? "L" : "M") + p.x.toFixed(1) + " " + p.y.toFixed(1)).join(" ");
}

function boxText(box) {
  if (!box.folded) return [box.label];
  const short = box.label.split(".").slice(-2).join(".");
  return ["▸ " + short, box.members.length + " nodes"];
}

export class SvgRenderer {
  constructor(stage) {
    this.kind = "svg";
    this.svg = el("svg", { class: "gv-svg", width: "100%", height: "100%" });
    const defs = el("defs");
    for (const [kind, colour] of Object.entries(EDGE_COLOURS)) {
      const marker = el("marker", {
        id: "gv-arrow-" + kind, viewBox: "0 0 10 10", refX: "9", refY: "5",
        markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse",
      });
      marker.appendChild(el("path", { d: "M0 0 L10 5 L0 10 z", fill: colour }));
      defs.appendChild(marker);
    }
    this.svg.appendChild(defs);
    this.viewport = el("g", { class: "gv-viewport" });
    this.svg.appendChild(this.viewport);
    stage.appendChild(this.svg);
    this.elements = new Map();
  }

  draw(scene) {
    this.viewport.replaceChildren();
    this.elements.clear();
    const edgeLayer = el("g", { class: "gv-edges" });
    for (const edge of scene.edges) {
      const points = scene.routes.get(edge.id);
      if (!points) continue;
      edgeLayer.appendChild(
        el("path", {
          d: pathOf(points), class: "edge " + edge.kind,
          "marker-end": `url(#gv-arrow-${edge.kind})`, "data-edge": edge.id,
        }),
      );
    }
    const nodeLayer = el("g", { class: "gv-nodes" });
    for (const box of scene.boxes.values()) {
      const at = scene.positions.get(box.key);
      if (!at) continue;
      const g = el("g", {
        class: "node " + boxClass(box), "data-key": box.key,
        transform: `translate(${at.x},${at.y})`,
      });
      const title = el("title");
      title.textContent = box.folded ? `${box.label} (${box.members.length} nodes, folded)` : box.node.path;
      g.appendChild(title);
      g.appendChild(el("rect", { width: at.width, height: at.height, rx: box.folded ? 8 : 5 }));
      const lines = boxText(box);
      lines.forEach((line, i) => {
        const text = el("text", {
          x: at.width / 2, y: lines.length === 1 ? at.height / 2 + 4 : 17 + i * 15,
          "text-anchor": "middle", class: i ? "sub" : "",
        });
        text.textContent = line;
        g.appendChild(text);
      });
      nodeLayer.appendChild(g);
      this.elements.set(box.key, g);
    }
    this.viewport.append(edgeLayer, nodeLayer);
  }

  setTransform(t) {
    this.viewport.setAttribute("transform", `translate(${t.x},${t.y}) scale(${t.k})`);
  }

  mark(key, name, on) {
    const g = this.elements.get(key);
    if (g) g.classList.toggle(name, on);
  }

  clearMarks(name) {
    for (const g of this.viewport.querySelectorAll("." + name)) g.classList.remove(name);
  }

  keyAt(event) {
    // Pointer capture (for dragging) retargets events to the stage: look at the spot itself.
    const hit = document.elementFromPoint(event.clientX, event.clientY);
    const g = hit && hit.closest && hit.closest("g.node");
    return g ? g.getAttribute("data-key") : null;
  }

  resize() {}

  destroy() {
    this.svg.remove();
  }
}

const FILL = {
  box: ["#e0e7ff", "#4338ca"], io: ["#dcfce7", "#16a34a"], merge: ["#fef3c7", "#d97706"],
  params: ["#dbeafe", "#2563eb"], plain: ["#ffffff", "#9ca3af"],
};

export class CanvasRenderer {
  constructor(stage) {
    this.kind = "canvas";
    this.stage = stage;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "gv-canvas";
    stage.appendChild(this.canvas);
    this.context = this.canvas.getContext("2d");
    this.transform = { x: 0, y: 0, k: 1 };
    this.marks = new Map(); // name → Set of keys
    this.scene = null;
    this.pending = false;
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.stage.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(rect.width * ratio));
    this.canvas.height = Math.max(1, Math.round(rect.height * ratio));
    this.canvas.style.width = rect.width + "px";
    this.canvas.style.height = rect.height + "px";
    this.ratio = ratio;
    this.schedule();
  }

  draw(scene) {
    this.scene = scene;
    // Index the scene once: boxes with their rectangles, edges with their bounding boxes.
    this.items = [];
    for (const box of scene.boxes.values()) {
      const at = scene.positions.get(box.key);
      if (at) this.items.push({ box, at, style: boxClass(box) });
    }
    this.lines = [];
    for (const edge of scene.edges) {
      const points = scene.routes.get(edge.id);
      if (!points) continue;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const p of points) {
        x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x); y1 = Math.max(y1, p.y);
      }
      this.lines.push({ edge, points, x0, y0, x1, y1 });
    }
    this.schedule();
  }

  setTransform(t) {
    this.transform = { ...t };
    this.schedule();
  }

  schedule() {
    // One paint per animation frame however many wheel or drag events arrive.
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.paint();
    });
  }

  paint() {
    const c = this.context;
    const { x, y, k } = this.transform;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.scene) return;
    c.setTransform(k * this.ratio, 0, 0, k * this.ratio, x * this.ratio, y * this.ratio);
    // The visible rectangle in graph coordinates, for culling.
    const vx0 = -x / k, vy0 = -y / k;
    const vx1 = vx0 + this.canvas.width / this.ratio / k, vy1 = vy0 + this.canvas.height / this.ratio / k;
    c.lineWidth = 1.2 / Math.max(k, 0.4);
    for (const kind of ["main", "branch", "skip"]) {
      c.strokeStyle = EDGE_COLOURS[kind];
      c.fillStyle = EDGE_COLOURS[kind];
      c.setLineDash(kind === "branch" ? [5, 3] : []);
      c.beginPath();
      const heads = [];
      for (const line of this.lines) {
        if (line.edge.kind !== kind) continue;
        if (line.x1 < vx0 || line.x0 > vx1 || line.y1 < vy0 || line.y0 > vy1) continue;
        const pts = line.points;
        c.moveTo(pts[0].x, pts[0].y);
        for (let i = 1; i < pts.length; i++) c.lineTo(pts[i].x, pts[i].y);
        if (k > 0.25) heads.push(pts);
      }
      c.stroke();
      c.setLineDash([]);
      c.beginPath();
      for (const pts of heads) {
        const a = pts[pts.length - 2], b = pts[pts.length - 1];
        const angle = Math.atan2(b.y - a.y, b.x - a.x);
        c.moveTo(b.x, b.y);
        c.lineTo(b.x - 7 * Math.cos(angle - 0.45), b.y - 7 * Math.sin(angle - 0.45));
        c.lineTo(b.x - 7 * Math.cos(angle + 0.45), b.y - 7 * Math.sin(angle + 0.45));
        c.closePath();
      }
      c.fill();
    }
    const labels = k * 30 >= 14; // text only when a box is tall enough on screen to read
    const hits = this.marks.get("hit") || new Set();
    const current = this.marks.get("current") || new Set();
    const selected = this.marks.get("selected") || new Set();
    c.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
    c.textAlign = "center";
    c.textBaseline = "middle";
    for (const item of this.items) {
      const { at, box, style } = item;
      if (at.x > vx1 || at.x + at.width < vx0 || at.y > vy1 || at.y + at.height < vy0) continue;
      const [fill, stroke] = FILL[style];
      c.fillStyle = hits.has(box.key) ? "#fef08a" : fill;
      c.strokeStyle = current.has(box.key) ? "#ea580c" : selected.has(box.key) ? "#111827" : stroke;
      c.lineWidth = current.has(box.key) || selected.has(box.key) ? 3 : 1;
      c.beginPath();
      c.rect(at.x, at.y, at.width, at.height);
      c.fill();
      c.stroke();
      if (labels) {
        c.fillStyle = "#111827";
        const lines = boxText(box);
        lines.forEach((line, i) => {
          const ty = lines.length === 1 ? at.y + at.height / 2 : at.y + 14 + i * 15;
          c.fillText(line, at.x + at.width / 2, ty, at.width - 8);
        });
      }
    }
  }

  mark(key, name, on) {
    if (!this.marks.has(name)) this.marks.set(name, new Set());
    const set = this.marks.get(name);
    if (on) set.add(key);
    else set.delete(key);
    this.schedule();
  }

  clearMarks(name) {
    this.marks.delete(name);
    this.schedule();
  }

  keyAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const { x, y, k } = this.transform;
    const gx = (event.clientX - rect.left - x) / k;
    const gy = (event.clientY - rect.top - y) / k;
    for (const item of this.items || []) {
      const at = item.at;
      if (gx >= at.x && gx <= at.x + at.width && gy >= at.y && gy <= at.y + at.height) {
        return item.box.key;
      }
    }
    return null;
  }

  destroy() {
    this.canvas.remove();
  }
}
