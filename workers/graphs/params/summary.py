"""A compact, JSON-ready description of a model's parameter graph for the site.

Counts are always given; the edges themselves (with the current weight on each) only for small
graphs, so the document stays within a size budget. Models the parameter graph cannot
represent get the reason instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workers.errors import ModelError
from workers.graphs.params.graph import EDGE_TYPES, build_param_graph, graph_features

TYPE_NAMES = {index: name for name, index in EDGE_TYPES.items()}
MAX_LISTED_EDGES = 5_000


def param_graph_summary(model: nn.Module, *, max_edges: int = MAX_LISTED_EDGES) -> dict[str, Any]:
    """Nodes, edges, edges per type and per parameter; the edge list when it is small.

    Listed edges are ``[source, target, type, value]`` with the first feature position of the
    current weights (the kernel's first tap for convolutions); a model on the meta device gets
    no values.
    """
    try:
        graph = build_param_graph(model)
    except ModelError as error:
        return {"supported": False, "reason": str(error)}
    counts = torch.bincount(graph.edge_type, minlength=len(TYPE_NAMES)).tolist()
    per_parameter: dict[str, int] = {}
    for segment in graph.segments:
        per_parameter[segment.name] = per_parameter.get(segment.name, 0) + (
            segment.edge_end - segment.edge_start
        )
    summary: dict[str, Any] = {
        "supported": True,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "param_edges": graph.num_param_edges,
        "by_type": {TYPE_NAMES[i]: n for i, n in enumerate(counts) if n},
        "by_parameter": [{"name": k, "edges": v} for k, v in per_parameter.items()],
        "edges_listed": graph.num_edges <= max_edges,
    }
    if summary["edges_listed"]:
        params = dict(model.named_parameters())
        on_meta = any(p.is_meta for p in params.values())
        values = (
            None
            if on_meta
            else graph_features(graph, {n: p.detach().float().cpu() for n, p in params.items()})[
                :, 0
            ].tolist()
        )
        src, dst = graph.edge_index.tolist()
        types = graph.edge_type.tolist()
        summary["edge_list"] = [
            [s, d, t, None if values is None else round(values[i], 5)]
            for i, (s, d, t) in enumerate(zip(src, dst, types, strict=True))
        ]
    return summary
