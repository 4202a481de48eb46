"""A compact, JSON-ready description of a model's parameter graph for the site.

Counts are always given; the edges themselves (with the current weight on each) only for small
graphs, so the document stays within a size budget. Models the parameter graph cannot
represent get the reason instead.

Every summary has ``coverage``: ``{"nowcast": int, "total": int, "left": [{"name": str,
"reason": str}]}``, counted in parameter elements. ``nowcast`` elements are on the graph (NiNo
predicts them); ``left`` lists the parameters that stay with the base optimizer and why. A
refused model has ``nowcast`` 0 and every parameter listed with the refusal's reason.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from workers.errors import ModelError
from workers.graphs.params.builder import GraphBuilder
from workers.graphs.params.graph import (
    EDGE_TYPES,
    ParamGraph,
    build_param_graph,
    graph_features,
    uses_registered_blocks,
)

TYPE_NAMES = {index: name for name, index in EDGE_TYPES.items()}
MAX_LISTED_EDGES = 5_000


def param_graph_summary(
    model: nn.Module, *, max_edges: int = MAX_LISTED_EDGES, example: Tensor | None = None
) -> dict[str, Any]:
    """Nodes, edges, edges per type and per parameter; the edge list when it is small.
    ``example``: the input batch the traced data flow is read on (else a guessed one).

    Listed edges are ``[source, target, type, value]`` with the first feature position of the
    current weights (the kernel's first tap for convolutions); a model on the meta device gets
    no values.
    """
    graph: ParamGraph | None = None
    reading: Any = None  # the traced reading, finished only when its edges are listed
    try:
        if uses_registered_blocks(model):
            graph = build_param_graph(model)
            builder, left = None, list(graph.left)
        else:
            # Traced models are counted before their edges are written, so that a large model
            # (VGG, ViT-H) costs no edge memory unless its edges are listed.
            from workers.graphs.params.traced import read_data_flow

            reading = read_data_flow(model, example)
            builder, left = reading.b, reading.left_params()
    except ModelError as error:
        params = list(model.named_parameters())
        return {
            "supported": False,
            "reason": str(error),
            "coverage": {
                "nowcast": 0,
                "total": sum(p.numel() for _, p in params),
                "left": [{"name": name, "reason": str(error)} for name, _ in params],
            },
        }
    if graph is not None:
        counts = torch.bincount(graph.edge_type, minlength=len(TYPE_NAMES)).tolist()
        nodes, by_type = graph.num_nodes, dict(enumerate(counts))
        segments, param_edges = graph.segments, graph.num_param_edges
    else:
        assert isinstance(builder, GraphBuilder)
        nodes, by_type = builder.edge_counts()
        segments, param_edges = tuple(builder.segments), builder.num_param_edges
    per_parameter: dict[str, int] = {}
    for segment in segments:
        per_parameter[segment.name] = per_parameter.get(segment.name, 0) + (
            segment.edge_end - segment.edge_start
        )
    num_edges = sum(by_type.values())
    nowcast = sum(
        int(torch.Size(s).numel())
        for s in (graph.param_shapes if graph is not None else builder.param_shapes).values()
    )
    summary: dict[str, Any] = {
        "supported": True,
        "nodes": nodes,
        "edges": num_edges,
        "param_edges": param_edges,
        "by_type": {TYPE_NAMES[i]: n for i, n in sorted(by_type.items()) if n},
        "by_parameter": [{"name": k, "edges": v} for k, v in per_parameter.items()],
        "edges_listed": num_edges <= max_edges,
        "coverage": {
            "nowcast": nowcast,
            "total": nowcast + sum(n for _, _, n in left),
            "left": [{"name": name, "reason": reason} for name, reason, _ in left],
        },
    }
    if summary["edges_listed"]:
        graph = graph if graph is not None else reading.finish()
        params = {n: p for n, p in model.named_parameters() if n in graph.param_shapes}
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
