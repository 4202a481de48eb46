// Layered layout with elkjs, always in a Web Worker so the page never freezes.
// elk-api.js (loaded as a classic script) defines window.ELK; the worker script is
// elk-worker.min.js from the same npm package.

import { boxSize } from "./model.js";

const SMALL = 600; // up to this many boxes: orthogonal edge routing and a thorough layout

function options(size) {
  const common = {
    "elk.algorithm": "layered",
    "elk.direction": "DOWN",
    "elk.spacing.nodeNode": "22",
    "elk.layered.spacing.nodeNodeBetweenLayers": "30",
    "elk.spacing.edgeNode": "12",
    "elk.layered.spacing.edgeNodeBetweenLayers": "12",
    // Keep the model's own order: the main path stays straight, shortcuts go beside it.
    "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
  };
  if (size <= SMALL) {
    return { ...common, "elk.edgeRouting": "ORTHOGONAL" };
  }
  // Large graphs: straight-line routing, cheaper crossing minimisation, and no recursive
  // passes whose depth grows with the graph's (a worker's stack overflows on a 5,000-layer
  // chain with elkjs's default network-simplex layering and component split): layers come
  // from our own longest-path depths, handed over as y positions ("interactive" layering).
  return {
    ...common,
    "elk.edgeRouting": "POLYLINE",
    "elk.layered.thoroughness": "1",
    "elk.layered.crossingMinimization.greedySwitch.type": "OFF",
    "elk.separateConnectedComponents": "false",
    "elk.layered.layering.strategy": "INTERACTIVE",
  };
}

/** Longest-path depth of every box (Kahn's order; boxes on a cycle keep what they had). */
function depths(children, edges) {
  const index = new Map(children.map((c, i) => [c.id, i]));
  const out = children.map(() => []);
  const indegree = new Array(children.length).fill(0);
  for (const e of edges) {
    const s = index.get(e.sources[0]);
    const d = index.get(e.targets[0]);
    out[s].push(d);
    indegree[d] += 1;
  }
  const depth = new Array(children.length).fill(0);
  const queue = [];
  indegree.forEach((n, i) => n === 0 && queue.push(i));
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head];
    for (const d of out[i]) {
      depth[d] = Math.max(depth[d], depth[i] + 1);
      if (--indegree[d] === 0) queue.push(d);
    }
  }
  return depth;
}

export class Layouter {
  constructor(workerUrl) {
    this.workerUrl = workerUrl;
    this.elk = null;
    this.generation = 0;
  }

  /**
   * Lay out the visible graph; resolves to {positions: Map key → {x, y, width, height},
   * routes: Map edge id → points, width, height, seconds} or null when a newer call
   * superseded it (the running worker is then stopped).
   */
  async layout(visible) {
    const generation = ++this.generation;
    if (this.busy && this.elk) {
      // A layout is still running in the worker: stop it rather than queue behind it.
      this.elk.terminateWorker();
      this.elk = null;
    }
    if (!this.elk) this.elk = new window.ELK({ workerUrl: this.workerUrl });
    const children = [];
    for (const box of visible.boxes.values()) {
      children.push({ id: box.key, ...boxSize(box) });
    }
    const edges = visible.edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] }));
    if (children.length > SMALL) {
      const depth = depths(children, edges);
      children.forEach((child, i) => {
        child.x = 0;
        child.y = depth[i] * 60;
      });
    }
    const graph = { id: "root", layoutOptions: options(children.length), children, edges };
    const started = performance.now();
    this.busy = true;
    let result;
    try {
      result = await this.elk.layout(graph);
    } catch (error) {
      if (generation !== this.generation) return null;
      throw error;
    } finally {
      if (generation === this.generation) this.busy = false;
    }
    if (generation !== this.generation) return null;
    const seconds = (performance.now() - started) / 1000;
    const positions = new Map();
    for (const child of result.children) {
      positions.set(child.id, { x: child.x, y: child.y, width: child.width, height: child.height });
    }
    const routes = new Map();
    for (const edge of result.edges || []) {
      const section = edge.sections && edge.sections[0];
      if (!section) continue;
      routes.set(edge.id, [section.startPoint, ...(section.bendPoints || []), section.endPoint]);
    }
    return { positions, routes, width: result.width, height: result.height, seconds };
  }
}
