"""The parameter graph as data: ``ParamGraph``, its edge features, and the map back to parameters.

``ParamGraph`` holds the structure (``edge_index``, ``edge_type``) and, in ``segments``, where
every parameter element sits among the edges. ``graph_features`` writes parameter states onto
the edges; ``params_from_features`` reads them back. ``ParamGraph.to_pyg`` hands the graph out
as a PyG ``Data`` that carries that map too, so ``ParamGraph.from_pyg`` recovers the graph from
it unchanged. The layout conventions are described in ``workers.graphs.params.graph``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # PyG takes ~1.5 s to import: only ``to_pyg``/``from_pyg`` need it
    from torch_geometric.data import Data

# The 15-row edge-type embedding of the published checkpoints (row 14 is unused).
EDGE_TYPES: dict[str, int] = {
    "pad": 0,
    "linear": 1,
    "bias": 2,
    "conv": 3,
    "norm": 4,
    "token_embedding": 5,
    "position_embedding": 6,
    "query": 7,
    "key": 8,
    "value": 9,
    "residual": 10,
    "head": 11,
    "reserved": 12,
    "self_loop": 13,
}
# Feature positions per edge: a 3x3 kernel, the largest the released checkpoints know.
MAX_FEAT = 9
AUX_VALUE = 1.0
SELF_LOOP_VALUE = 2.0


@dataclass(frozen=True)
class ParamSegment:
    """Where rows ``row_start:row_end`` (dim 0) of one parameter live among the edges.

    The rows occupy the ``n_src * n_dst`` edges from ``edge_start`` on, source-major. Normally
    dim 0 indexes destinations (``W[o, i, *kernel]`` -> edge ``edge_start + i * n_dst + o``,
    positions ``0..kernel-1``); for embeddings (``src_major``) dim 0 indexes the sources
    (``W[v, j]`` -> edge ``edge_start + v * n_dst + j``).

    A kernel with more than ``MAX_FEAT`` positions per (input, output) pair is spread over
    parallel edges: each segment then holds positions ``pos_start .. pos_start + kernel - 1``
    of the ``pos_total`` positions (``pos_total`` 0 means ``kernel``, the common case).

    A ``src_major`` segment may hold only columns ``col_start:col_end`` of its rows (a weight
    stored ``[in, out]``, as transformers' ``Conv1D``, whose output columns are split into
    attention roles): ``W[i, col_start + j]`` -> edge ``edge_start + i * n_dst + j``, the edge
    an ``nn.Linear`` holding ``W.T`` would give ``W.T[col_start + j, i]``. ``col_end`` 0
    means every column.
    """

    name: str
    row_start: int
    row_end: int
    edge_start: int
    n_src: int
    n_dst: int
    kernel: int = 1
    src_major: bool = False
    pos_start: int = 0
    pos_total: int = 0
    col_start: int = 0
    col_end: int = 0

    def columns(self, width: int) -> slice:
        """The columns of a ``src_major`` segment's rows (``width``: the parameter's)."""
        return slice(self.col_start, self.col_end or width)

    @property
    def edge_end(self) -> int:
        """One past the last edge of the segment."""
        return self.edge_start + self.n_src * self.n_dst

    @property
    def positions(self) -> int:
        """Kernel positions of one (input, output) pair over all its parallel edges."""
        return self.pos_total or self.kernel


@dataclass(frozen=True)
class ParamLayout:
    """Where the parameters sit among a graph's edges: the map back from edges to tensors.

    ``ParamGraph.to_pyg`` attaches it to the ``Data`` as one opaque attribute,
    ``param_layout``, rather than as separate fields: PyG then leaves it alone when moving the
    ``Data`` to a device or cloning it, and batching makes a list of layouts (one per graph),
    which a dict of parameter shapes would not survive.
    """

    num_param_edges: int
    segments: tuple[ParamSegment, ...]
    param_shapes: Mapping[str, torch.Size]


@dataclass
class ParamGraph:
    """A model's parameter graph: structure, edge types and the map back to parameters.

    ``edge_index`` is [2, E] (row 0 source, row 1 target), ``edge_type`` [E] with the values of
    ``EDGE_TYPES``. Edges ``[0, num_param_edges)`` hold parameters (see ``segments``), edges
    ``[num_param_edges, E - num_nodes)`` are auxiliary (residual, head) and the last
    ``num_nodes`` are self-loops ``n -> n`` in node order.
    """

    edge_index: Tensor
    edge_type: Tensor
    num_nodes: int
    num_param_edges: int
    segments: tuple[ParamSegment, ...]
    param_shapes: dict[str, torch.Size]
    #: Parameters left to the base optimizer: ``(name, reason, number of elements)``.
    left: tuple[tuple[str, str, int], ...] = ()
    _lpe: dict[int, Tensor] = field(default_factory=dict, repr=False)

    def coverage(self) -> dict[str, object]:
        """Parameter elements on the graph (``nowcast``) out of ``total``, and what is left.

        ``left`` lists ``{"name", "reason"}`` for every parameter the graph does not hold;
        those stay with the base optimizer.
        """
        nowcast = sum(int(torch.Size(s).numel()) for s in self.param_shapes.values())
        return {
            "nowcast": nowcast,
            "total": nowcast + sum(n for _, _, n in self.left),
            "left": [{"name": name, "reason": reason} for name, reason, _ in self.left],
        }

    @property
    def num_edges(self) -> int:
        """Number of edges, auxiliary edges and self-loops included."""
        return self.edge_index.shape[1]

    @property
    def aux_mask(self) -> Tensor:
        """[E] bool, True for edges that carry no parameter (residual, head, self-loop)."""
        mask = torch.zeros(self.num_edges, dtype=torch.bool)
        mask[self.num_param_edges :] = True
        return mask

    @property
    def edge_ranges(self) -> dict[str, tuple[int, int]]:
        """First and one-past-last edge of each parameter (its edges are contiguous)."""
        ranges: dict[str, tuple[int, int]] = {}
        for seg in self.segments:
            start, end = ranges.get(seg.name, (seg.edge_start, seg.edge_end))
            ranges[seg.name] = (min(start, seg.edge_start), max(end, seg.edge_end))
        return ranges

    def element_index(self, name: str) -> Tensor:
        """Flat positions in a [E, 9] feature matrix of every element of parameter ``name``.

        Returned in the parameter's row-major element order, so that
        ``features.view(-1)[graph.element_index(name)]`` is ``param.view(-1)``.
        """
        if name not in self.param_shapes:
            raise KeyError(f"no parameter {name!r} in the graph")
        shape = self.param_shapes[name]
        index = torch.empty(int(torch.Size(shape).numel()), dtype=torch.long)
        rows = index.view(shape[0], -1) if len(shape) else index.view(1, 1)
        for seg in self.segments:
            if seg.name != name:
                continue
            target = rows[seg.row_start : seg.row_end]
            if seg.src_major:
                edge = seg.edge_start + torch.arange(seg.n_src * seg.n_dst)
                target = target[:, seg.columns(target.shape[1])]
                target.copy_((edge * MAX_FEAT).view(target.shape))
            else:
                o = torch.arange(seg.n_dst).view(-1, 1, 1)
                i = torch.arange(seg.n_src).view(1, -1, 1)
                k = torch.arange(seg.kernel).view(1, 1, -1)
                edge = seg.edge_start + i * seg.n_dst + o
                window = target.view(seg.n_dst, seg.n_src, seg.positions)
                window[:, :, seg.pos_start : seg.pos_start + seg.kernel] = edge * MAX_FEAT + k
        return index

    def to_pyg(self, edge_attr: Tensor | None = None, lpe: Tensor | None = None) -> Data:
        """This graph as a PyG ``Data``: what NiNo reads, plus the map back to parameters.

        The ``Data`` has ``edge_index``, ``edge_type`` and ``num_nodes``, with ``edge_attr``
        (e.g. from ``graph_features``) and ``lpe`` (node encodings [N, k]) when given; those
        are the inputs of ``NiNoModel.predict_pyg``. It also carries ``param_layout`` (a
        :class:`ParamLayout`) so that ``ParamGraph.from_pyg`` gives this graph back. Tensors
        are shared, not copied. Such ``Data`` batch with ``torch_geometric.data.Batch`` into
        one disjoint graph (edge indices offset per graph, one layout per graph).
        """
        from torch_geometric.data import Data

        data = Data(edge_index=self.edge_index, edge_type=self.edge_type, num_nodes=self.num_nodes)
        data.param_layout = ParamLayout(
            self.num_param_edges, tuple(self.segments), dict(self.param_shapes)
        )
        if edge_attr is not None:
            if edge_attr.shape[0] != self.num_edges:
                raise ValueError(
                    f"edge_attr has {edge_attr.shape[0]} rows; the graph has {self.num_edges} edges"
                )
            data.edge_attr = edge_attr
        if lpe is not None:
            if lpe.shape[0] != self.num_nodes:
                raise ValueError(
                    f"lpe has {lpe.shape[0]} rows; the graph has {self.num_nodes} nodes"
                )
            data.lpe = lpe
        return data

    @classmethod
    def from_pyg(cls, data: Data) -> ParamGraph:
        """The parameter graph a ``Data`` made by :meth:`to_pyg` describes (one graph, not a batch).

        Structure tensors are shared with ``data``. A ``data.lpe`` is kept as the graph's
        cached encoding for its width, so that ``lpe(k)`` returns it.
        """
        from torch_geometric.data import Batch

        if isinstance(data, Batch):
            raise ValueError("a Batch holds several graphs; convert each (batch.get_example(i))")
        missing = [key for key in ("edge_index", "edge_type", "param_layout") if key not in data]
        if missing:
            raise ValueError(
                f"this Data has no {', '.join(missing)}; only a Data made by ParamGraph.to_pyg "
                "can be turned back into a parameter graph"
            )
        layout: ParamLayout = data.param_layout
        graph = cls(
            edge_index=data.edge_index,
            edge_type=data.edge_type,
            num_nodes=int(data.num_nodes),
            num_param_edges=layout.num_param_edges,
            segments=layout.segments,
            param_shapes=dict(layout.param_shapes),
        )
        lpe = data.get("lpe")
        if lpe is not None:
            graph._lpe[lpe.shape[1]] = lpe
        return graph

    def lpe(self, k: int = 8, cache_dir: str | None = None) -> Tensor:
        """Laplacian eigenvector positional encoding [num_nodes, k] (see ``lpe.laplacian_pe``)."""
        from workers.graphs.params.lpe import laplacian_pe

        if k not in self._lpe:
            self._lpe[k] = laplacian_pe(self.edge_index, self.num_nodes, k, cache_dir=cache_dir)
        return self._lpe[k]


def graph_features(
    graph: ParamGraph,
    params: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
) -> Tensor:
    """Edge features [E, 9 * c] from ``c`` parameter states (one state dict, or a list).

    Column ``f * c + t`` holds feature position ``f`` of state ``t`` (the reference layout).
    Auxiliary edges hold 1.0 and self-loops 2.0 at position 0 of every state; unused positions
    are 0. Values are copied, never scaled.
    """
    states = [params] if isinstance(params, Mapping) else list(params)
    if not states:
        raise ValueError("graph_features needs at least one parameter state")
    c = len(states)
    first = states[0][graph.segments[0].name] if graph.segments else torch.zeros(())
    out = torch.zeros(graph.num_edges, MAX_FEAT, c, dtype=first.dtype, device=first.device)
    for seg in graph.segments:
        shape = graph.param_shapes[seg.name]
        stacked = torch.stack(
            [state[seg.name].detach()[seg.row_start : seg.row_end] for state in states], dim=-1
        )
        if tuple(stacked.shape[:-1]) != (seg.row_end - seg.row_start, *shape[1:]):
            raise ValueError(f"{seg.name} has shape {tuple(stacked.shape[:-1])}, not {shape}")
        if seg.src_major and len(shape) == 2:
            stacked = stacked[:, seg.columns(shape[1])]
        if seg.src_major:
            values = stacked.reshape(seg.n_src, seg.n_dst, 1, c)
        else:
            values = stacked.reshape(seg.n_dst, seg.n_src, seg.positions, c).transpose(0, 1)
            if seg.pos_total:
                values = values[:, :, seg.pos_start : seg.pos_start + seg.kernel]
        target = out[seg.edge_start : seg.edge_end].view(seg.n_src, seg.n_dst, MAX_FEAT, c)
        target[:, :, : seg.kernel].copy_(values)
    loops = graph.num_edges - graph.num_nodes
    out[graph.num_param_edges : loops, 0] = AUX_VALUE
    out[loops:, 0] = SELF_LOOP_VALUE
    return out.view(graph.num_edges, MAX_FEAT * c)


def params_from_features(
    graph: ParamGraph, edge_attr: Tensor, state: int = -1
) -> dict[str, Tensor]:
    """Read parameters back from edge features: the inverse of ``graph_features``.

    ``edge_attr`` is [E, 9] or [E, 9 * c] (then state ``state`` is read, by default the last).
    Auxiliary edges, self-loops and unused positions are ignored. Returns new contiguous tensors
    keyed by parameter name, in parameter order.
    """
    if edge_attr.dim() != 2 or edge_attr.shape[0] != graph.num_edges:
        raise ValueError(
            f"edge_attr must be [{graph.num_edges}, 9*c], not {tuple(edge_attr.shape)}"
        )
    c, rem = divmod(edge_attr.shape[1], MAX_FEAT)
    if rem or c < 1:
        raise ValueError(f"edge_attr width {edge_attr.shape[1]} is not a multiple of {MAX_FEAT}")
    feats = edge_attr.view(graph.num_edges, MAX_FEAT, c)[:, :, state]
    out = {
        name: torch.empty(shape, dtype=feats.dtype, device=feats.device)
        for name, shape in graph.param_shapes.items()
    }
    for seg in graph.segments:
        tensor = out[seg.name]
        rows = tensor.view(tensor.shape[0], -1) if tensor.dim() else tensor.view(1, 1)
        target = rows[seg.row_start : seg.row_end]
        block = feats[seg.edge_start : seg.edge_end].view(seg.n_src, seg.n_dst, MAX_FEAT)
        if seg.src_major:
            target = target[:, seg.columns(target.shape[1])]
            target.copy_(block[:, :, 0].reshape(target.shape))
        else:
            window = target.view(seg.n_dst, seg.n_src, seg.positions)
            window[:, :, seg.pos_start : seg.pos_start + seg.kernel] = block[
                :, :, : seg.kernel
            ].transpose(0, 1)
    return out
