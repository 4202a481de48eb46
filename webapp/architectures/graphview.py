"""A first, readable drawing of a module graph: a layered top-to-bottom SVG, laid out here.

Nodes go on the layer of their longest path from the input; within a layer they are spread out
side by side. Good enough to read a ResNet or a small transformer; the graph engine issue will
bring a collapsible view for graphs with thousands of nodes.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

MAX_DRAWN_NODES = 600
NODE_W, NODE_H, GAP_X, GAP_Y = 150, 30, 20, 22


@dataclass
class Layout:
    width: int
    height: int
    nodes: list[dict]
    edges: list[dict]


def layout_graph(graph: dict) -> Layout | None:
    """Place the nodes of ``graph`` (module-graph JSON); ``None`` when it is too big to draw."""
    nodes = graph.get("nodes", [])
    if not nodes or len(nodes) > MAX_DRAWN_NODES:
        return None
    ids = [node.get("id", index) for index, node in enumerate(nodes)]
    children: dict[int, list[int]] = defaultdict(list)
    indegree = dict.fromkeys(ids, 0)
    for src, dst in graph.get("edges", []):
        if src in indegree and dst in indegree:
            children[src].append(dst)
            indegree[dst] += 1
    depth = dict.fromkeys(ids, 0)
    queue = deque(i for i in ids if indegree[i] == 0)
    seen = 0
    while queue:  # Kahn's order gives longest-path depths in one pass
        current = queue.popleft()
        seen += 1
        for child in children[current]:
            depth[child] = max(depth[child], depth[current] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if seen != len(ids):  # a cycle: fall back to listing order
        depth = {node_id: index for index, node_id in enumerate(ids)}
    layers: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for node_id, node in zip(ids, nodes, strict=True):
        layers[depth[node_id]].append((node_id, node))
    widest = max(len(layer) for layer in layers.values())
    width = widest * (NODE_W + GAP_X) + GAP_X
    placed: dict[int, dict] = {}
    for level, layer in layers.items():
        offset = (width - len(layer) * (NODE_W + GAP_X) + GAP_X) / 2
        for index, (node_id, node) in enumerate(layer):
            x = offset + index * (NODE_W + GAP_X)
            y = GAP_Y + level * (NODE_H + GAP_Y)
            label = node.get("name") or node.get("type", "")
            placed[node_id] = {
                "x": x,
                "y": y,
                "cx": x + NODE_W / 2,
                "label": label if len(label) <= 22 else "…" + label[-21:],
                "type": node.get("type", ""),
                "op": node.get("op", ""),
                "title": _title(node),
                "has_params": bool(node.get("params")),
            }
    edges = [
        {
            "x1": placed[s]["cx"],
            "y1": placed[s]["y"] + NODE_H,
            "x2": placed[d]["cx"],
            "y2": placed[d]["y"],
        }  # fmt: skip
        for s, d in graph.get("edges", [])
        if s in placed and d in placed
    ]
    height = GAP_Y + (max(layers) + 1) * (NODE_H + GAP_Y)
    return Layout(width=int(width), height=int(height), nodes=list(placed.values()), edges=edges)


def _title(node: dict) -> str:
    parts = [f"{node.get('name', '')} ({node.get('type', '')})"]
    for param in node.get("params", []):
        name, shape = (param["name"], param["shape"]) if isinstance(param, dict) else param
        parts.append(f"{name}: {'×'.join(str(d) for d in shape)}")
    if node.get("out_shape"):
        parts.append("out: " + "×".join(str(d) for d in node["out_shape"]))
    return "\n".join(parts)


def hierarchy(graph: dict) -> list[dict]:
    """Nodes grouped by module path (stages → blocks → layers) for a collapsible view.

    Returns a forest of ``{"name", "children", "nodes", "count"}``; ``nodes`` are the graph
    nodes whose module is exactly that path, ``count`` all nodes below it.
    """
    root: dict = {"name": "", "children": {}, "nodes": [], "count": 0}
    for node in graph.get("nodes", []):
        path = [part for part in (node.get("module") or "").split(".") if part]
        current = root
        current["count"] += 1
        for depth in range(len(path)):
            name = ".".join(path[: depth + 1])
            current = current["children"].setdefault(
                name, {"name": name, "children": {}, "nodes": [], "count": 0}
            )
            current["count"] += 1
        current["nodes"].append(node)

    def freeze(entry: dict) -> dict:
        return {**entry, "children": [freeze(child) for child in entry["children"].values()]}

    top = freeze(root)
    # Nodes outside every module (input, functional ops) come first, as their own group.
    loose = {"name": "(model)", "children": [], "nodes": top["nodes"], "count": len(top["nodes"])}
    return ([loose] if top["nodes"] else []) + top["children"]
