// The parameter graph neuron by neuron (small models only): one row per layer block, a
// circle per neuron, a square per bias node, a line per weight coloured by its sign.
// Hovering a neuron keeps only its edges lit.

const SVG_NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function draw(holder, graph) {
  const blocks = graph.blocks.filter((b) => b.ids && b.ids.length);
  const width = Math.max(640, holder.clientWidth || 900);
  const rowGap = 110;
  const left = 150;
  const place = new Map(); // node id → {x, y}
  blocks.forEach((block, row) => {
    const y = 30 + row * rowGap;
    const span = width - left - 30;
    const step = block.ids.length > 1 ? Math.min(26, span / (block.ids.length - 1)) : 0;
    const start = left + (span - step * (block.ids.length - 1)) / 2;
    block.ids.forEach((id, i) => place.set(id, { x: start + i * step, y }));
    if (block.bias != null) place.set(block.bias, { x: left - 18, y: y - rowGap / 2, bias: true });
  });
  const height = 30 + (blocks.length - 1) * rowGap + 30;
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "pg-svg" });
  const edges = el("g");
  const byNode = new Map();
  let strongest = 0;
  for (const [, , , value] of graph.edge_list) strongest = Math.max(strongest, Math.abs(value || 0));
  for (const [s, d, , value] of graph.edge_list) {
    const a = place.get(s);
    const b = place.get(d);
    if (!a || !b || s === d) continue; // self-loops are implied
    const w = value || 0;
    const line = el("line", {
      x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "pg-edge",
      stroke: w >= 0 ? "#2563eb" : "#dc2626",
      "stroke-opacity": (0.08 + 0.8 * (strongest ? Math.abs(w) / strongest : 0)).toFixed(2),
    });
    const title = el("title");
    title.textContent = `${s} → ${d}: ${w}`;
    line.appendChild(title);
    edges.appendChild(line);
    for (const id of [s, d]) {
      if (!byNode.has(id)) byNode.set(id, []);
      byNode.get(id).push(line);
    }
  }
  svg.appendChild(edges);
  blocks.forEach((block, row) => {
    const label = el("text", { x: 8, y: 34 + row * rowGap });
    label.textContent = `${block.layer} (${block.neurons})`;
    svg.appendChild(label);
  });
  for (const [id, at] of place) {
    const shape = at.bias
      ? el("rect", { x: at.x - 4, y: at.y - 4, width: 8, height: 8, fill: "#fde68a" })
      : el("circle", { cx: at.x, cy: at.y, r: 5, fill: "#fff" });
    const title = el("title");
    title.textContent = `${at.bias ? "bias node" : "neuron"} ${id}`;
    shape.appendChild(title);
    shape.addEventListener("mouseenter", () => {
      edges.querySelectorAll(".pg-edge").forEach((line) => line.classList.add("dim"));
      for (const line of byNode.get(id) || []) {
        line.classList.remove("dim");
        line.classList.add("lit");
      }
    });
    shape.addEventListener("mouseleave", () => {
      edges.querySelectorAll(".pg-edge").forEach((line) => line.classList.remove("dim", "lit"));
    });
    svg.appendChild(shape);
  }
  holder.replaceChildren(svg);
  holder.dataset.neurons = String(place.size);
}

for (const details of document.querySelectorAll(".pg-draw")) {
  details.addEventListener("toggle", async () => {
    const holder = details.querySelector(".pg-canvas");
    if (!details.open || holder.dataset.neurons) return;
    holder.textContent = "Drawing…";
    const response = await fetch(details.dataset.url, { credentials: "same-origin" });
    const doc = await response.json();
    const graph = doc.param_graph;
    if (!graph || !graph.edge_list) {
      holder.textContent = "The stored parameter graph has no edge list to draw.";
      return;
    }
    draw(holder, graph);
  });
}
