"""The architecture graph a Graph HyperNetwork reads: model in, typed DAG out.

One forward pass is recorded by autograd and the autograd graph is turned into a DAG whose
nodes are the 15 GHN primitives (``arch_ops.PRIMITIVES``), following the conventions of the
published GHN-2/GHN-3 code so that graphs built here equal the ones those checkpoints were
trained on (checked against recorded graphs in ``tests/engine/graphs/test_arch_graph.py``):

* an op that consumes parameters becomes one node per predicted tensor, weight before bias
  (``conv``/``sep_conv``/``dil_conv`` then ``bias``); a norm layer is one ``bn``/``ln`` node
  that also carries the norm bias; an add of a learned tensor (ViT ``pos_embedding``) becomes a
  ``pos_enc`` node feeding a ``sum`` node;
* pools, global means, add, cat, attention (softmax or a fused attention kernel) and
  squeeze-excitation gating (a multiply by a sigmoid-style gate) are nodes of their own;
* every other op (activations, views, dropout, arithmetic, ...) is folded: its inputs are
  connected to its users. Ops nobody knows are folded too, but reported in ``unknown_ops``;
  parameters no node owns (ConvNeXt ``layer_scale``, ViT ``class_token``, parameters the
  forward pass never uses) are reported in ``not_covered``;
* an ``input`` node feeds the ops that read the model input.

Tracing runs on whatever device the model lives on; on the ``meta`` device it costs almost
nothing, so big models can be graphed without allocating their weights. ``torch.export``
programs work through ``ExportedProgram.module()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from workers.graphs.arch import ops
from workers.graphs.arch.build import ArchNode, GraphBuilder
from workers.graphs.arch.ops import PRIMITIVES
from workers.graphs.arch.order import move_pool_before_classifier
from workers.graphs.arch.trace import trace_model

if TYPE_CHECKING:  # PyG takes ~1.5 s to import: only to_pyg/from_pyg need it
    from torch_geometric.data import Data

__all__ = [
    "FORMAT",
    "PRIMITIVES",
    "ArchGraph",
    "ArchNode",
    "architecture_graph",
    "shortest_path_triples",
]

FORMAT = "weightspace.arch-graph/1"


@dataclass
class ArchGraph:
    """A typed DAG over GHN primitives, in a topological order (``input`` first).

    ``edges`` is a long tensor [E, 2] of real (data-flow) edges i -> j. ``distances`` is a
    long tensor [K, 3] of (i, j, d) for every pair with a directed shortest path i -> j of
    length 1 <= d <= ``max_distance``; d == 1 are the real edges, the others are the GHN
    virtual edges. Since the order is topological, i < j in both.
    """

    nodes: list[ArchNode]
    edges: Tensor
    distances: Tensor
    max_distance: int
    unknown_ops: list[str] = field(default_factory=list)
    not_covered: list[str] = field(default_factory=list)

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    def primitive_idx(self) -> Tensor:
        """Long tensor [N] of primitive indices."""
        return torch.tensor([n.primitive_idx for n in self.nodes], dtype=torch.long)

    def adjacency(self) -> Tensor:
        """Dense int matrix A [N, N] as GHN-3 uses it: A[i, j] = forward distance i -> j.

        0 means unreachable (or farther than ``max_distance``), 1 a real edge. The backward
        distances GHN-3 also embeds are ``A.T``.
        """
        n = self.n_nodes
        a = torch.zeros(n, n, dtype=torch.long)
        if len(self.distances):
            a[self.distances[:, 0], self.distances[:, 1]] = self.distances[:, 2]
        return a

    def predicted_params(self) -> list[str]:
        """Names of all parameters some node stands for, in node order."""
        return [name for node in self.nodes for name, _ in node.params]

    def to_pyg(self) -> Data:
        """This graph as a PyG ``Data``, with everything ``from_pyg`` needs to give it back.

        Tensors: ``edge_index`` [2, E] (the real edges, row 0 source), ``primitive`` [N] (the
        primitive indices), ``distance_index`` [2, K] and ``distance`` [K] (the shortest-path
        pairs of ``distances``, real edges included at distance 1). Since ``distance_index``
        is named like an index, PyG offsets it by the node count when graphs are batched, as
        it does ``edge_index``. Python attributes: ``arch_nodes`` (the ``ArchNode`` list),
        ``max_distance``, ``unknown_ops`` and ``not_covered``. GHN-3 reads the distances
        densely (``adjacency``), which is why its layers stay attention layers rather than
        message passing.
        """
        from torch_geometric.data import Data

        data = Data(
            edge_index=self.edges.T.contiguous(),
            primitive=self.primitive_idx(),
            distance_index=self.distances[:, :2].T.contiguous(),
            distance=self.distances[:, 2].contiguous(),
            num_nodes=self.n_nodes,
        )
        data.arch_nodes = list(self.nodes)
        data.max_distance = self.max_distance
        data.unknown_ops = list(self.unknown_ops)
        data.not_covered = list(self.not_covered)
        return data

    @classmethod
    def from_pyg(cls, data: Data) -> ArchGraph:
        """The architecture graph a ``Data`` made by :meth:`to_pyg` describes.

        Only a ``Data`` of one graph (not a batch) can be turned back; the result can be
        passed wherever an ``ArchGraph`` is read (e.g. ``workers.ghn`` predictions).
        """
        from torch_geometric.data import Batch

        if isinstance(data, Batch):
            raise ValueError("a Batch holds several graphs; convert each (batch.get_example(i))")
        keys = ("edge_index", "distance_index", "distance", "arch_nodes", "max_distance")
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(
                f"this Data has no {', '.join(missing)}; only a Data made by ArchGraph.to_pyg "
                "can be turned back into an architecture graph"
            )
        nodes = list(data.arch_nodes)
        if len(nodes) != data.num_nodes:
            raise ValueError(f"{len(nodes)} arch_nodes for {data.num_nodes} nodes")
        distances = torch.cat([data.distance_index.T, data.distance.view(-1, 1)], dim=1)
        return cls(
            nodes=nodes,
            edges=data.edge_index.T.contiguous(),
            distances=distances.to(torch.long),
            max_distance=int(data.max_distance),
            unknown_ops=list(data.get("unknown_ops") or []),
            not_covered=list(data.get("not_covered") or []),
        )

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able description for the site (no distances: they follow from edges).

        Each node is {"type", "name", "op", "module", "params": [[name, shape], ...]}. The
        hierarchy is the dotted ``module`` path read by prefixes ("layer1" > "layer1.0" >
        "layer1.0.conv1", as ``ArchNode.hierarchy``); it is not spelled out per node to keep
        big graphs small. Edges are [i, j] pairs of node indices.
        """
        return {
            "format": FORMAT,
            "primitives": list(ops.PRIMITIVES),
            "nodes": [
                {
                    "type": n.primitive,
                    "name": n.name,
                    "op": n.op,
                    "module": n.module,
                    "params": [[name, list(shape)] for name, shape in n.params],
                }
                for n in self.nodes
            ],
            "edges": self.edges.tolist(),
            "max_distance": self.max_distance,
            "n_virtual_edges": int((self.distances[:, 2] > 1).sum()) if len(self.distances) else 0,
            "unknown_ops": list(self.unknown_ops),
            "not_covered": list(self.not_covered),
        }


def architecture_graph(
    model: nn.Module,
    example: Tensor | None = None,
    *,
    max_distance: int = 50,
    classifier_last: bool = True,
) -> ArchGraph:
    """Build the GHN architecture graph of ``model`` from one forward pass on ``example``.

    ``example`` defaults to ``randn(2, 3, 224, 224)`` (299 for Inception v3), or to the input
    shapes recorded in an exported program, on the device of the model's parameters. The model
    is put in eval mode for the pass (dropout and stochastic depth are then identities) and
    restored afterwards; parameters are not modified.

    ``classifier_last`` reproduces a convention of the published GHNs, which find the
    classifier by position (the last two nodes): when the graph ends in a classifier
    weight -> bias followed by a global pool (SqueezeNet), the pool node is listed before the
    classifier instead. Edges are left alone, so this only relabels nodes; pass False for the
    literal data flow.
    """
    trace = trace_model(model, example)
    builder = GraphBuilder(trace)
    nodes, edges = builder.build()
    if classifier_last:
        move_pool_before_classifier(nodes, edges)
    edge_tensor = torch.tensor(sorted(edges), dtype=torch.long).reshape(-1, 2)
    # Parameters no node stands for: owned by ops without a primitive, or never used in the
    # forward pass (GoogLeNet's auxiliary classifiers in eval mode). A GHN leaves them alone.
    owned = {name for node in nodes for name, _ in node.params}
    not_covered = builder.not_covered | (set(trace.param_names.values()) - owned)
    return ArchGraph(
        nodes=nodes,
        edges=edge_tensor,
        distances=shortest_path_triples(len(nodes), edge_tensor, max_distance),
        max_distance=max_distance,
        unknown_ops=sorted(builder.unknown_ops),
        not_covered=sorted(not_covered),
    )


# Sources processed together: memory is about block x N booleans per frontier.
_BLOCK = 1024


def shortest_path_triples(n_nodes: int, edges: Tensor, max_distance: int) -> Tensor:
    """All (i, j, d) with a directed shortest path i -> j of length 1 <= d <= ``max_distance``.

    ``edges`` is a long tensor [E, 2] of i -> j edges. One breadth-first search per source
    node, run for a block of sources at once: the frontier is a dense [block, N] matrix and
    each step multiplies it by the sparse adjacency, so the cost is O(max_distance * E * block)
    per block and never a Python loop over node pairs. Returns a long tensor [K, 3] sorted by
    (i, j).
    """
    if n_nodes == 0 or len(edges) == 0 or max_distance < 1:
        return torch.zeros(0, 3, dtype=torch.long)
    edges = edges.to(torch.long).reshape(-1, 2)
    # adj_t[j, i] = 1 for an edge i -> j, so that adj_t @ frontier.T steps every search forward.
    edges = torch.unique(edges, dim=0)
    adj_t = torch.sparse_coo_tensor(
        edges.flip(1).T, torch.ones(len(edges)), (n_nodes, n_nodes), check_invariants=True
    ).coalesce()
    found: list[Tensor] = []
    for lo in range(0, n_nodes, _BLOCK):
        sources = torch.arange(lo, min(lo + _BLOCK, n_nodes))
        frontier = torch.zeros(n_nodes, len(sources))
        frontier[sources, torch.arange(len(sources))] = 1.0
        visited = frontier.bool()
        for d in range(1, max_distance + 1):
            reached = torch.sparse.mm(adj_t, frontier) > 0
            reached &= ~visited
            if not reached.any():
                break
            j, b = reached.nonzero(as_tuple=True)
            found.append(torch.stack([sources[b], j, torch.full_like(j, d)], dim=1))
            visited |= reached
            frontier = reached.float()
    if not found:
        return torch.zeros(0, 3, dtype=torch.long)
    triples = torch.cat(found)
    order = torch.argsort(triples[:, 0] * n_nodes + triples[:, 1])
    return triples[order]
