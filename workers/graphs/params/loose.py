"""Every parameter on the graph, connected or not: what the per-parameter WNN+ baseline reads.

WNN+ (the published ``nino_mlp``) looks at each parameter element alone, with its edge type;
it never passes messages, so it needs no faithful data flow. ``with_loose_params`` adds the
parameters a parameter graph left out (``ParamGraph.left``) as *loose* edge blocks on fresh
nodes: a tensor ``[rows, cols, *kernel]`` becomes ``cols x rows`` edges carrying the kernel
positions (``ceil(positions / 9)`` parallel edges above 3x3), a vector one node joined to
``rows`` nodes. Edge types follow the tensor's shape (conv, linear, norm for vectors named
``weight``, bias otherwise). The original graph's edges, nodes and segments are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from workers.graphs.params.container import EDGE_TYPES, MAX_FEAT, ParamGraph, ParamSegment


def _edge_type(name: str, shape: torch.Size) -> int:
    if len(shape) > 2:
        return EDGE_TYPES["conv"]
    if len(shape) == 2:
        return EDGE_TYPES["linear"]
    return EDGE_TYPES["norm"] if name.endswith("weight") else EDGE_TYPES["bias"]


def with_loose_params(
    graph: ParamGraph | None, shapes: Mapping[str, torch.Size]
) -> ParamGraph:
    """``graph`` plus loose edges for every parameter of ``shapes`` it does not hold.

    ``graph`` None starts from an empty graph (a model the parameter graph refuses).
    Zero-dimensional parameters (scalars) stay left out.
    """
    held = set(graph.param_shapes) if graph is not None else set()
    num_nodes = graph.num_nodes if graph is not None else 0
    num_param = graph.num_param_edges if graph is not None else 0
    segments = list(graph.segments) if graph is not None else []
    param_shapes = dict(graph.param_shapes) if graph is not None else {}
    new_src: list[Tensor] = []
    new_dst: list[Tensor] = []
    new_type: list[Tensor] = []
    edge = num_param
    for name, shape in shapes.items():
        if name in held or len(shape) == 0:
            continue
        rows = shape[0]
        cols = shape[1] if len(shape) >= 2 else 1
        positions = int(math.prod(shape[2:])) if len(shape) > 2 else 1
        src = torch.arange(num_nodes, num_nodes + cols)
        dst = torch.arange(num_nodes + cols, num_nodes + cols + rows)
        num_nodes += cols + rows
        chunks = math.ceil(positions / MAX_FEAT)
        kind = _edge_type(name, shape)
        for c in range(chunks):
            kernel = min(MAX_FEAT, positions - c * MAX_FEAT)
            segments.append(
                ParamSegment(name, 0, rows, edge, cols, rows, kernel, False, c * MAX_FEAT,
                             positions if chunks > 1 else 0)  # fmt: skip
            )
            new_src.append(src.repeat_interleave(rows))
            new_dst.append(dst.repeat(cols))
            new_type.append(torch.full((cols * rows,), kind, dtype=torch.long))
            edge += cols * rows
        param_shapes[name] = torch.Size(shape)
    empty = torch.empty(0, dtype=torch.long)
    if graph is not None:
        loops = graph.num_edges - graph.num_nodes
        old_param = graph.edge_index[:, :num_param], graph.edge_type[:num_param]
        old_aux = graph.edge_index[:, num_param:loops], graph.edge_type[num_param:loops]
        left = graph.left
    else:
        old_param = old_aux = (torch.empty(2, 0, dtype=torch.long), empty)
        left = ()
    loose_index = torch.stack([torch.cat(new_src or [empty]), torch.cat(new_dst or [empty])])
    self_loops = torch.arange(num_nodes)
    edge_index = torch.cat(
        [old_param[0], loose_index, old_aux[0], torch.stack([self_loops, self_loops])], dim=1
    )
    edge_type = torch.cat(
        [old_param[1], torch.cat(new_type or [empty]), old_aux[1],
         torch.full((num_nodes,), EDGE_TYPES["self_loop"], dtype=torch.long)]
    )  # fmt: skip
    return ParamGraph(
        edge_index=edge_index,
        edge_type=edge_type,
        num_nodes=num_nodes,
        num_param_edges=edge,
        segments=tuple(segments),
        param_shapes=param_shapes,
        left=tuple(item for item in left if item[0] not in param_shapes),
    )
