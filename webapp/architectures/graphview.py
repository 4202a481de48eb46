"""The graph viewer's data: what the inspect job stored, shaped for the browser.

The architecture page draws its graphs in the browser (``static/js/graph/``): elkjs lays them
out in a Web Worker and the page renders, pans, zooms, folds and searches them. This module
turns the stored artifacts into one JSON document for that viewer. It runs on the web tier,
so it only reads JSON (no torch).

Two graphs of the same model are offered, and the page explains the difference:

* the **module graph** (``graph.json``): one node per leaf-module call (Conv2d, BatchNorm2d,
  ReLU, MultiheadAttention …) and per compute function outside modules (the residual ``add``,
  ``cat``); only views, reshapes and dropout are folded. This is what the inspect job's summary
  counts ("70 nodes / 77 edges" for resnet18);
* the **GHN graph** (``arch_graph.json``): the one a Graph HyperNetwork reads, typed by its 15
  primitives; parameter-free activations are folded too, and a layer with a bias becomes two
  nodes (weight, then bias) — hence 53 nodes / 60 edges for resnet18.
"""

from __future__ import annotations

from collections import deque
from typing import Any

# Views with more nodes than this open folded to a module depth that shows at most this many.
OPEN_EXPANDED = 800
# The parameter graph's neurons and weights are drawn one by one only up to this many edges.
MAX_DRAWN_PARAM_EDGES = 5_000

FUNCTION_LABELS = {
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "cat": "Concat", "stack": "Stack",
    "matmul": "MatMul", "bmm": "MatMul", "mm": "MatMul", "einsum": "Einsum", "mean": "Mean",
    "softmax": "Softmax", "scaled_dot_product_attention": "Attention", "flatten": "Flatten",
    "adaptive_avg_pool2d": "AvgPool", "relu": "ReLU", "gelu": "GELU", "silu": "SiLU",
    "sigmoid": "Sigmoid", "layer_norm": "LayerNorm", "interpolate": "Upsample", "pad": "Pad",
}  # fmt: skip
GHN_LABELS = {
    "conv": "conv", "bn": "bn", "ln": "ln", "bias": "bias", "sum": "Add (sum)",
    "concat": "Concat", "msa": "Attention (msa)", "max_pool": "MaxPool", "avg_pool": "AvgPool",
    "input": "Input", "pos_enc": "Position embedding", "se": "Squeeze-excite",
    "sep_conv": "sep conv", "dil_conv": "dil conv", "cse": "channel SE",
    "glob_avg": "Global avg pool",
}  # fmt: skip


DIMENSIONED = ("Conv", "ConvTranspose", "BatchNorm", "InstanceNorm", "MaxPool", "AvgPool")


def shape_text(shape: Any) -> str:
    """``[64, 3, 7, 7]`` → ``"64×3×7×7"``."""
    return "×".join(str(d) for d in shape) if isinstance(shape, list | tuple) else ""


def _params(node: dict) -> list[tuple[str, list]]:
    # The module graph stores {"name", "shape"}; the GHN graph [name, shape] pairs.
    out = []
    for param in node.get("params") or []:
        if isinstance(param, dict):
            out.append((str(param.get("name", "")), list(param.get("shape") or [])))
        elif isinstance(param, list | tuple) and len(param) == 2:
            out.append((str(param[0]), list(param[1] or [])))
    return out


def _numel(shape: list) -> int:
    total = 1
    for d in shape:
        total *= d if isinstance(d, int) else 1
    return total


def module_label(node: dict) -> str:
    """What a person calls a module-graph node: operation and shape, e.g. ``Conv 64×3×7×7``."""
    kind, type_ = node.get("op", ""), str(node.get("type", ""))
    params = _params(node)
    weight = next((shape for name, shape in params if name.endswith("weight")), None)
    if kind == "input":
        return f"Input {shape_text((node.get('out_shape') or [])[1:])}".strip()
    if kind == "output":
        return "Output"
    if kind == "function":
        return FUNCTION_LABELS.get(type_, type_.replace("_", " ").capitalize() or "Function")
    attrs = node.get("attrs") or {}
    base = type_
    if base[-2:] in ("1d", "2d", "3d") and base[:-2] in DIMENSIONED:
        base = base[:-2]  # "Conv 64×3×7×7": the weight's shape already tells the dimension
    if type_ == "MultiheadAttention":
        if "num_heads" in attrs:
            return f"MultiheadAttention ×{attrs['num_heads']} heads"
        embed = next((shape for name, shape in params if name.endswith("out_proj.weight")), None)
        return f"MultiheadAttention {embed[0]}" if embed else type_
    if base in ("Conv", "ConvTranspose") and weight and attrs.get("groups", 1) > 1:
        return f"{base} {shape_text(weight)} /{attrs['groups']} groups"
    if weight:
        return f"{base} {shape_text(weight)}"
    if params:
        return f"{base} {shape_text(params[0][1])}"
    return base


def ghn_label(node: dict) -> str:
    """A GHN-graph node: its primitive and the shape of the tensor it predicts."""
    primitive = str(node.get("type", ""))
    label = GHN_LABELS.get(primitive, primitive)
    params = _params(node)
    return f"{label} {shape_text(params[0][1])}" if params else label


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _module_view(graph: dict, nino: set[str] | None, primitives: dict[str, list[str]]) -> dict:
    nodes = []
    for index, node in enumerate(graph.get("nodes") or []):
        kind = node.get("op", "")
        name = str(node.get("name", ""))
        if kind == "module":
            path, group = name, _parent(name)
        else:
            # Residual adds and cats carry the module whose forward called them (when the
            # inspection recorded it); the name alone ("add_3") says nothing.
            group = str(node.get("module") or "")
            path = f"{group}.{name}" if group else name
        nodes.append(
            {
                "id": node.get("id", index),
                "label": module_label(node),
                "op": str(node.get("type", "")),
                "kind": kind,
                "name": name,
                "path": path,
                "group": group,
                "params": _param_rows(_params(node), nino),
                "out": node.get("out_shape"),
                "attrs": node.get("attrs") or {},
                "ghn": primitives.get(name, []) if kind == "module" else [],
            }
        )
    return _finish(nodes, graph.get("edges") or [])


def _ghn_view(arch: dict, nino: set[str] | None) -> dict:
    nodes = []
    for index, node in enumerate(arch.get("nodes") or []):
        module = str(node.get("module") or "")
        nodes.append(
            {
                "id": index,
                "label": ghn_label(node),
                "op": str(node.get("type", "")),
                "kind": "ghn",
                "name": str(node.get("name", "")),
                "path": str(node.get("name", "")),
                # A GHN node sits inside its module, like the module graph's leaf layers.
                "group": _parent(module) if _params(node) else module,
                "params": _param_rows(_params(node), nino),
                "out": None,
                "attrs": {"autograd op": node.get("op", "")},
                "ghn": [str(node.get("type", ""))],
            }
        )
    return _finish(nodes, arch.get("edges") or [])


def _param_rows(params: list[tuple[str, list]], nino: set[str] | None) -> list[dict]:
    return [
        {
            "name": name,
            "shape": shape,
            "numel": _numel(shape),
            "nino": None if nino is None else name in nino,
        }
        for name, shape in params
    ]


def _finish(nodes: list[dict], raw_edges: list) -> dict:
    """Number nodes 0..n-1, drop dangling edges and tell each edge's kind.

    ``skip`` edges jump over layers straight into a merge (identity shortcuts); ``branch``
    edges lead through a side path that is shorter than the main one (a ResNet downsample, an
    Inception branch); the rest are ``main``. Judged on longest-path depths, so a skip edge is
    one whose ends are further apart than one layer.
    """
    index = {node["id"]: i for i, node in enumerate(nodes)}
    edges = []
    for edge in raw_edges:
        if isinstance(edge, list | tuple) and len(edge) >= 2:
            s, d = index.get(edge[0]), index.get(edge[1])
            if s is not None and d is not None and s != d:
                edges.append((s, d))
    for i, node in enumerate(nodes):
        node["id"] = i
    n = len(nodes)
    children: list[list[int]] = [[] for _ in range(n)]
    parents: list[list[int]] = [[] for _ in range(n)]
    for s, d in edges:
        children[s].append(d)
        parents[d].append(s)
    order = _topological(n, children, parents)
    down = [0] * n  # longest path from any source
    for i in order:
        for c in children[i]:
            down[c] = max(down[c], down[i] + 1)
    up = [0] * n  # longest path to any sink
    for i in reversed(order):
        for c in children[i]:
            up[i] = max(up[i], up[c] + 1)
    longest = max((down[i] + up[i] for i in range(n)), default=0)
    side = [down[i] + up[i] < longest for i in range(n)]
    kinds = []
    for s, d in edges:
        if side[s] or side[d]:
            kinds.append("branch")
        elif down[d] - down[s] > 1:
            kinds.append("skip")
        else:
            kinds.append("main")
    _tidy_groups(nodes)
    return {
        "nodes": nodes,
        "edges": [[s, d, kind] for (s, d), kind in zip(edges, kinds, strict=True)],
    }


def _tidy_groups(nodes: list[dict]) -> None:
    # A module holding a single node is no group worth folding (the GHN graph's max-pool sits
    # in module "maxpool" on its own): that node moves up to the parent module.
    counts: dict[str, int] = {}
    for node in nodes:
        parts = node["group"].split(".") if node["group"] else []
        for depth in range(1, len(parts) + 1):
            key = ".".join(parts[:depth])
            counts[key] = counts.get(key, 0) + 1
    for node in nodes:
        while node["group"] and counts.get(node["group"], 0) <= 1:
            node["group"] = _parent(node["group"])


def _topological(n: int, children: list[list[int]], parents: list[list[int]]) -> list[int]:
    indegree = [len(p) for p in parents]
    queue = deque(i for i in range(n) if indegree[i] == 0)
    order = []
    while queue:
        current = queue.popleft()
        order.append(current)
        for c in children[current]:
            indegree[c] -= 1
            if indegree[c] == 0:
                queue.append(c)
    if len(order) < n:  # a cycle (should not happen): keep listing order for the rest
        seen = set(order)
        order += [i for i in range(n) if i not in seen]
    return order


def default_depth(nodes: list[dict], limit: int = OPEN_EXPANDED) -> int | None:
    """The deepest module depth at which folding leaves at most ``limit`` boxes (None: all).

    Depth d shows every module path cut to d parts as one box; small graphs open unfolded.
    """
    if len(nodes) <= limit:
        return None
    deepest = max((len(node["group"].split(".")) for node in nodes if node["group"]), default=0)
    best = 1
    for depth in range(1, deepest + 1):
        # Modules at least ``depth`` deep become one box each; shallower nodes stay nodes.
        boxes = {
            ".".join(parts[:depth]) if len(parts := node["group"].split(".")) >= depth
            and node["group"] else f"#{node['id']}"
            for node in nodes
        }
        if len(boxes) > limit:
            break
        best = depth
    return best


def param_blocks(param_graph: dict) -> list[dict]:
    """The NiNo parameter graph as per-layer blocks: neurons and incoming edges per layer.

    With the edge list stored (small models), each weight's edges give the exact neuron ids
    of the layer they feed (``first``..``last``) and of its bias node; otherwise only the edge
    counts per parameter are known.
    """
    rows = param_graph.get("by_parameter") or []
    listed = param_graph.get("edge_list") if param_graph.get("edges_listed") else None
    blocks: list[dict] = []
    position = 0
    inputs: set[int] = set()
    for row in rows:
        name, count = str(row.get("name", "")), int(row.get("edges", 0))
        layer = name.rsplit(".", 1)[0] if "." in name else name
        if not blocks or blocks[-1]["layer"] != layer:
            blocks.append({"layer": layer, "params": [], "edges": 0, "neurons": None})
        block = blocks[-1]
        block["params"].append({"name": name, "edges": count})
        block["edges"] += count
        if listed is not None:
            segment = listed[position : position + count]
            sources = {edge[0] for edge in segment}
            if segment and name.endswith("bias") and len(sources) == 1:
                block["bias"] = next(iter(sources))  # a bias is one extra node per layer
            elif segment:
                targets = sorted({edge[1] for edge in segment})
                block["ids"] = targets
                block["neurons"] = len(targets)
                if len(blocks) == 1:
                    inputs |= sources
        position += count
    if inputs:
        ids = sorted(inputs)
        blocks.insert(0, {"layer": "input", "params": [], "edges": 0, "neurons": len(ids),
                          "ids": ids})  # fmt: skip
    return blocks


def viewer_document(documents: dict[str, Any]) -> dict[str, Any]:
    """The viewer's JSON from the stored artifacts (``graph.json``, ``arch_graph.json``,
    ``param_graph.json``, ``tensors.json``; any may be missing)."""
    graph = documents.get("graph.json")
    arch = documents.get("arch_graph.json")
    params = documents.get("param_graph.json")
    supported = isinstance(params, dict) and params.get("supported")
    nino = (
        {str(row.get("name")) for row in params.get("by_parameter") or []} if supported else None
    )
    primitives: dict[str, list[str]] = {}
    if isinstance(arch, dict):
        for node in arch.get("nodes") or []:
            primitives.setdefault(str(node.get("module") or ""), []).append(str(node.get("type")))
    views: dict[str, dict] = {}
    if isinstance(graph, dict) and graph.get("nodes"):
        views["module"] = {
            "title": "Module graph",
            "about": "One node per layer call and per compute function (residual add, "
            "concat); only views, reshapes and dropout are folded. The inspect job counts "
            "this graph.",
            **_module_view(graph, nino, primitives),
        }
    if isinstance(arch, dict) and arch.get("nodes"):
        views["ghn"] = {
            "title": "GHN graph",
            "about": "What a Graph HyperNetwork reads: nodes typed by its 15 primitives; "
            "activations are folded as well, and a layer with a bias is two nodes (weight, "
            "then bias), so the counts differ from the module graph's.",
            **_ghn_view(arch, nino),
        }
    for view in views.values():
        view["depth"] = default_depth(view["nodes"])
    parameter_graph: dict[str, Any] | None = None
    if isinstance(params, dict):
        parameter_graph = {
            "supported": bool(supported),
            "reason": params.get("reason", ""),
            "nodes": params.get("nodes"),
            "edges": params.get("edges"),
            "blocks": param_blocks(params) if supported else [],
            "coverage": params.get("coverage"),
        }
        drawable = supported and params.get("edges_listed")
        if drawable and len(params.get("edge_list") or []) <= MAX_DRAWN_PARAM_EDGES:
            parameter_graph["edge_list"] = params["edge_list"]
    return {
        "format": "weightspace.graph-viewer/1",
        "views": views,
        "default_view": "module" if "module" in views else "ghn",
        "param_graph": parameter_graph,
        # Filled in by the view from the newest attached checkpoint with statistics.
        "weight_stats": None,
    }
