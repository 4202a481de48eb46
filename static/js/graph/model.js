// The viewer's graph model: folding by module path, the visible graph, search.
// Pure functions over the viewer JSON (webapp/architectures/graphview.py); no DOM here.

/** Every ancestor path of a dotted module path: "a.b.c" → ["a", "a.b", "a.b.c"]. */
export function prefixes(path) {
  if (!path) return [];
  const parts = path.split(".");
  return parts.map((_, i) => parts.slice(0, i + 1).join("."));
}

/** Module groups of a view: path → {path, depth, count (nodes below), params (numel)}. */
export function groupsOf(view) {
  const groups = new Map();
  for (const node of view.nodes) {
    const numel = node.params.reduce((sum, p) => sum + p.numel, 0);
    for (const path of prefixes(node.group)) {
      let group = groups.get(path);
      if (!group) {
        group = { path, depth: path.split(".").length, count: 0, params: 0, ops: new Map() };
        groups.set(path, group);
      }
      group.count += 1;
      group.params += numel;
      group.ops.set(node.op, (group.ops.get(node.op) || 0) + 1);
    }
  }
  return groups;
}

/**
 * Folding state: modules at depth >= foldAt are shown as one box unless opened; a module
 * can also be closed explicitly. foldAt = Infinity shows every node.
 */
export class Folding {
  constructor(foldAt) {
    this.foldAt = foldAt ?? Infinity;
    this.opened = new Set();
    this.closed = new Set();
  }

  setDepth(foldAt) {
    this.foldAt = foldAt;
    this.opened.clear();
    this.closed.clear();
  }

  isFolded(path) {
    if (this.closed.has(path)) return true;
    return path.split(".").length >= this.foldAt && !this.opened.has(path);
  }

  open(path) {
    this.closed.delete(path);
    this.opened.add(path);
  }

  /** Open every module above a node so that it becomes visible. */
  reveal(node) {
    for (const path of prefixes(node.group)) {
      if (this.isFolded(path)) this.open(path);
    }
  }

  close(path) {
    this.opened.delete(path);
    this.closed.add(path);
  }

  /** The box key that stands for a node: its outermost folded module, or the node itself. */
  keyOf(node) {
    for (const path of prefixes(node.group)) {
      if (this.isFolded(path)) return "g:" + path;
    }
    return "n:" + node.id;
  }
}

const KIND_RANK = { main: 0, branch: 1, skip: 2 };

/**
 * The graph to draw: boxes (nodes or folded modules) and edges between them. Edges inside a
 * folded module vanish; parallel edges merge, a merged edge is "main" if any part is.
 */
export function visibleGraph(view, folding, groups) {
  const boxes = new Map();
  const keyOfNode = new Array(view.nodes.length);
  for (const node of view.nodes) {
    const key = folding.keyOf(node);
    keyOfNode[node.id] = key;
    let box = boxes.get(key);
    if (!box) {
      if (key.startsWith("g:")) {
        const group = groups.get(key.slice(2));
        box = { key, folded: true, group, members: [], label: key.slice(2) };
      } else {
        box = { key, folded: false, node, members: [], label: node.label };
      }
      boxes.set(key, box);
    }
    box.members.push(node.id);
  }
  const edges = new Map();
  for (const [s, d, kind] of view.edges) {
    const a = keyOfNode[s];
    const b = keyOfNode[d];
    if (a === b) continue;
    const id = a + ">" + b;
    const old = edges.get(id);
    if (!old) edges.set(id, { id, source: a, target: b, kind });
    else if (KIND_RANK[kind] < KIND_RANK[old.kind]) old.kind = kind;
  }
  return { boxes, edges: [...edges.values()], keyOfNode };
}

/** Node ids matching a query: substring of name/label, a regex, or an op type. */
export function search(view, mode, query) {
  const q = query.trim();
  if (!q) return { ids: [], error: "" };
  let test;
  if (mode === "regex") {
    let re;
    try {
      re = new RegExp(q, "i");
    } catch (error) {
      return { ids: [], error: "Not a valid regular expression" };
    }
    test = (n) => re.test(n.path) || re.test(n.label);
  } else if (mode === "op") {
    const lower = q.toLowerCase();
    test = (n) =>
      n.op.toLowerCase() === lower ||
      n.label.toLowerCase().split(" ")[0] === lower ||
      n.ghn.some((p) => p.toLowerCase() === lower);
  } else {
    const lower = q.toLowerCase();
    test = (n) => n.path.toLowerCase().includes(lower) || n.label.toLowerCase().includes(lower);
  }
  return { ids: view.nodes.filter(test).map((n) => n.id), error: "" };
}

/** Text width estimate for a monospace 11px label, to size boxes before layout. */
export function boxSize(box) {
  const chars = Math.max(box.label.length, box.folded ? 14 : 4);
  return { width: Math.min(320, Math.max(84, chars * 6.8 + 22)), height: box.folded ? 42 : 30 };
}
