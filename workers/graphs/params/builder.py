"""Building the parameter graph: walk a model once, allocate neurons, record edge blocks.

``build_param_graph`` reads plain layers (Linear, Conv, norms, Embedding) and containers as a
chain; modules registered with ``workers.graphs.params.registry.register_block`` are handed to
their handler, which uses the public methods of ``GraphBuilder`` below (``nodes``, ``param``,
``param_edges``, ``aux_edges`` and the layer helpers) to add their nodes and edges. The layout
conventions are described in ``workers.graphs.params.graph``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from workers.errors import ModelError
from workers.graphs.params.container import EDGE_TYPES, MAX_FEAT, ParamGraph, ParamSegment
from workers.graphs.params.registry import block_handler

_NORM_LAYERS = (
    nn.LayerNorm,
    nn.RMSNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
_CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class _EdgeBlock:
    """A dense block of edges from every ``src`` node to every ``dst`` node (source-major)."""

    src: Tensor
    dst: Tensor
    edge_type: int
    reverse: bool = False  # store the edges as dst -> src (transposed key weights)

    @property
    def size(self) -> int:
        return len(self.src) * len(self.dst)


class GraphBuilder:
    """Walks a model once, allocating nodes and recording edge blocks; ``finish`` fills them.

    Node ids are handed out in call order, and parameter edges are laid out in the order
    ``param_edges`` is called, so a block handler fixes the graph's node and edge order by the
    order of its calls. Edges are only recorded (as index ranges) until ``finish``, which
    writes them into one preallocated ``edge_index``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.num_nodes = 0
        self.num_param_edges = 0
        self.blocks: list[_EdgeBlock] = []
        self.aux: list[tuple[Tensor, Tensor, int]] = []
        self.segments: list[ParamSegment] = []
        self.param_shapes: dict[str, torch.Size] = {}
        self.seen: set[int] = set()
        self.merged: list[tuple[Tensor, Tensor]] = []

    # -- allocation -------------------------------------------------------------------------

    def nodes(self, n: int) -> Tensor:
        """``n`` new node ids."""
        ids = torch.arange(self.num_nodes, self.num_nodes + n)
        self.num_nodes += n
        return ids

    def name_of(self, module: nn.Module) -> str:
        """The module's dotted name in the model, for error messages."""
        return self.names.get(id(module), "") or "(model)"

    def param(self, module: nn.Module, attr: str) -> tuple[str, Tensor]:
        """Claim parameter ``module.<attr>``: its full name and tensor (refused if tied)."""
        prefix = self.names.get(id(module), "")
        name = f"{prefix}.{attr}" if prefix else attr
        return name, self.claim(name, getattr(module, attr))

    def claim(self, name: str, tensor: Tensor) -> Tensor:
        """Claim parameter ``tensor`` under its full ``name`` (refused if already claimed)."""
        if id(tensor) in self.seen:
            raise ModelError(
                f"Parameter {name} is shared with another layer; tied parameters are not "
                "supported by the parameter graph."
            )
        self.seen.add(id(tensor))
        self.param_shapes[name] = tensor.shape
        return tensor

    def param_edges(
        self,
        name: str,
        rows: tuple[int, int],
        src: Tensor,
        dst: Tensor,
        edge_type: int,
        kernel: int = 1,
        src_major: bool = False,
        reverse: bool = False,
        pos_start: int = 0,
        pos_total: int = 0,
    ) -> None:
        """Record the edges holding rows ``rows`` of parameter ``name`` (see ``ParamSegment``).

        ``reverse`` stores the edges as ``dst -> src`` (keys, whose weights run transposed);
        ``pos_start``/``pos_total`` place one chunk of a kernel above 3x3 (parallel edges).
        """
        self.segments.append(
            ParamSegment(
                name, rows[0], rows[1], self.num_param_edges, len(src), len(dst), kernel,
                src_major, pos_start, pos_total,
            )  # fmt: skip
        )
        self.blocks.append(_EdgeBlock(src, dst, edge_type, reverse))
        self.num_param_edges += len(src) * len(dst)

    def split_block(
        self, block: _EdgeBlock, pieces: list[tuple[int, int, Tensor, int, bool]]
    ) -> None:
        """Replace the weight edges of ``block`` by pieces over its destination rows.

        Each piece ``(row_start, row_end, src, edge_type, reverse)`` holds those rows of the
        block's parameter with new sources (one new bias node per piece for a bias block) and
        type; the pieces must cover the rows in order. The traced attention reader uses this to
        give a projection written as one ``Linear`` its query, key and value roles after the
        fact; edge offsets of every later segment are recomputed (the total stays the same).
        A weight stored ``[in, out]`` (``src_major``, transformers' ``Conv1D``) is split over
        its columns instead, which gives the very edges of the ``nn.Linear`` split by rows.
        """
        index = next(i for i, b in enumerate(self.blocks) if b is block)
        seg = self.segments[index]
        outputs = (seg.n_dst if seg.src_major else seg.row_end - seg.row_start) == len(block.dst)
        if not outputs or (seg.src_major and any(len(p[2]) != seg.n_src for p in pieces)):
            raise ModelError(f"Parameter {seg.name} cannot be split into attention roles.")
        blocks, segments = [], []
        for start, end, src, edge_type, reverse in pieces:
            blocks.append(_EdgeBlock(src, block.dst[start:end], edge_type, reverse))
            if seg.src_major:
                span = dict(col_start=seg.col_start + start, col_end=seg.col_start + end)
            else:
                span = dict(row_start=seg.row_start + start, row_end=seg.row_start + end)
            segments.append(replace(seg, n_src=len(src), n_dst=end - start, **span))
        self.blocks[index : index + 1] = blocks
        self.segments[index : index + 1] = segments
        offset = seg.edge_start
        for i in range(index, len(self.segments)):
            self.segments[i] = replace(self.segments[i], edge_start=offset)
            offset += self.segments[i].n_src * self.segments[i].n_dst
        self.num_param_edges = offset

    def aux_edges(self, src: Tensor, dst: Tensor, edge_type: int) -> None:
        """Record auxiliary one-to-one edges ``src[j] -> dst[j]`` (no parameter)."""
        self.aux.append((src, dst, edge_type))

    def head_edges(self, heads: Tensor, neurons: Tensor, head_dim: int, group: int) -> None:
        """Join head ``h`` to neurons of head ``h // group`` (``group`` > 1: shared kv heads)."""
        owner = torch.arange(len(heads)).repeat_interleave(head_dim)
        dims = torch.arange(head_dim).repeat(len(heads))
        self.aux_edges(
            heads[owner], neurons[(owner // group) * head_dim + dims], EDGE_TYPES["head"]
        )

    # -- layers ------------------------------------------------------------------------------

    def inputs(self, current: Tensor | None, n: int, module: nn.Module) -> Tensor:
        """The layer's input neurons: the current ones, or fresh input nodes for a first layer."""
        if current is None:
            return self.nodes(n)
        if len(current) != n:
            raise ModelError(
                f"Layer {self.name_of(module)} ({type(module).__name__}) expects {n} inputs but "
                f"the layer before it has {len(current)} neurons; the parameter graph reads "
                "models as a chain of layers (flattening feature maps is not supported)."
            )
        return current

    def dense(
        self,
        module: nn.Module,
        current: Tensor | None,
        n_in: int,
        n_out: int,
        edge_type: int,
        kernel: int = 1,
    ) -> Tensor:
        """A Linear/Conv layer: bias node, then output neurons; weight edges, then bias edges."""
        src = self.inputs(current, n_in, module)
        w_name, _ = self.param(module, "weight")
        has_bias = getattr(module, "bias", None) is not None
        bias_node = self.nodes(1) if has_bias else None
        out = self.nodes(n_out)
        self.param_edges(w_name, (0, n_out), src, out, edge_type, kernel)
        if bias_node is not None:
            b_name, _ = self.param(module, "bias")
            self.param_edges(b_name, (0, n_out), bias_node, out, EDGE_TYPES["bias"])
        return out

    def linear(self, module: nn.Linear, current: Tensor | None, edge_type: int = 1) -> Tensor:
        """A Linear layer; ``edge_type`` overrides the weight edges' type (attention roles)."""
        return self.dense(module, current, module.in_features, module.out_features, edge_type)

    def conv(self, module: nn.Module, current: Tensor | None) -> Tensor:
        """A Conv layer with at most 3x3 kernel positions and no groups."""
        assert isinstance(module, _CONV_LAYERS)
        name = self.name_of(module)
        if module.groups != 1:
            raise ModelError(
                f"Layer {name} is a grouped/depthwise convolution (groups={module.groups}), "
                "which the parameter graph does not support."
            )
        kernel = math.prod(module.kernel_size)
        if kernel > MAX_FEAT:
            size = "x".join(str(s) for s in module.kernel_size)
            raise ModelError(
                f"Layer {name} has a {size} kernel ({kernel} positions); the parameter graph "
                f"holds at most {MAX_FEAT} positions per edge (3x3)."
            )
        return self.dense(
            module,
            current,
            module.in_channels,
            module.out_channels,
            EDGE_TYPES["conv"],
            kernel,
        )

    def norm(self, module: nn.Module, current: Tensor | None) -> Tensor:
        """Affine vectors of a norm layer: one node each, joined to the normalised neurons."""
        weight = getattr(module, "weight", None)
        if weight is None:
            return current if current is not None else torch.empty(0, dtype=torch.long)
        if weight.dim() != 1:
            raise ModelError(
                f"Layer {self.name_of(module)} normalises over several dimensions "
                f"{tuple(weight.shape)}; the parameter graph supports one feature dimension."
            )
        neurons = self.inputs(current, weight.shape[0], module)
        for attr, edge_type in (("weight", EDGE_TYPES["norm"]), ("bias", EDGE_TYPES["bias"])):
            if getattr(module, attr, None) is None:
                continue
            name, _ = self.param(module, attr)
            self.param_edges(name, (0, len(neurons)), self.nodes(1), neurons, edge_type)
        return neurons

    def embedding(self, module: nn.Embedding, dst: Tensor | None, edge_type: int) -> Tensor:
        """Embedding rows: one node per row, edges row -> embedding neuron (``W[v, j]``)."""
        name, weight = self.param(module, "weight")
        rows, width = weight.shape
        src = self.nodes(rows)
        if dst is None:
            dst = self.nodes(width)
        elif len(dst) != width:
            raise ModelError(f"Embedding {self.name_of(module)} has width {width}, not {len(dst)}.")
        self.param_edges(name, (0, rows), src, dst, edge_type, src_major=True)
        return dst

    def layer(self, module: nn.Module, current: Tensor | None) -> Tensor | None:
        """A leaf module of a chain: the neurons after it."""
        if isinstance(module, nn.Linear):
            return self.linear(module, current)
        if isinstance(module, _CONV_LAYERS):
            return self.conv(module, current)
        if isinstance(module, _NORM_LAYERS):
            return self.norm(module, current)
        if isinstance(module, nn.Embedding):
            if current is not None:
                raise ModelError(
                    f"Embedding {self.name_of(module)} is not the first layer; the parameter "
                    "graph only supports embeddings of the model's input."
                )
            return self.embedding(module, None, EDGE_TYPES["token_embedding"])
        if next(module.parameters(recurse=False), None) is not None:
            raise ModelError(
                f"Layer {self.name_of(module)} ({type(module).__name__}) is not supported by the "
                "parameter graph."
            )
        return current  # activations, pooling, dropout, flatten: no neurons of their own

    def module(self, module: nn.Module, current: Tensor | None, root: bool = False) -> Tensor:
        """Any module: a registered block goes to its handler, a container is read as a chain.

        Leaves are read as layers (``layer``); ``root`` accepts the model's own top module as a
        chain of its children even when it is not a container.
        """
        handler = block_handler(type(module))
        if handler is not None:
            return handler(self, module, current)
        children = list(module.children())
        if not children:
            return self.layer(module, current)
        if not root and not isinstance(module, _CONTAINERS):
            raise ModelError(
                f"Block {self.name_of(module)} ({type(module).__name__}) has a data flow the "
                "parameter graph cannot read (only chains of layers and the built-in blocks are "
                "supported)."
            )
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if own:
            raise ModelError(
                f"Parameter {own[0]} of {type(module).__name__} is not inside a supported layer."
            )
        for child in children:
            current = self.module(child, current)
        return current

    # -- output ------------------------------------------------------------------------------

    def merge_nodes(self, drop: Tensor, keep: Tensor) -> None:
        """Make nodes ``drop[j]`` the same neurons as ``keep[j]`` (applied in ``finish``)."""
        self.merged.append((drop, keep))

    def _node_map(self) -> tuple[Tensor | None, int]:
        """Old id -> new id after merges (None when there are none), and the node count."""
        if not self.merged:
            return None, self.num_nodes
        target = torch.arange(self.num_nodes)
        for drop, keep in self.merged:
            target[drop] = keep
        while True:  # follow chains of merges to their end
            followed = target[target]
            if torch.equal(followed, target):
                break
            target = followed
        alive = target == torch.arange(self.num_nodes)
        new_id = torch.cumsum(alive, 0) - 1
        return new_id[target], int(alive.sum())

    def edge_counts(self) -> tuple[int, dict[int, int]]:
        """Nodes and edges per edge type the finished graph will have (nothing is written)."""
        _, n_nodes = self._node_map()
        by_type: dict[int, int] = {}
        for blk in self.blocks:
            by_type[blk.edge_type] = by_type.get(blk.edge_type, 0) + blk.size
        for src, _, kind in self.aux:
            by_type[kind] = by_type.get(kind, 0) + len(src)
        by_type[EDGE_TYPES["self_loop"]] = by_type.get(EDGE_TYPES["self_loop"], 0) + n_nodes
        return n_nodes, by_type

    def finish(self, left: list[tuple[str, str, int]] | None = None) -> ParamGraph:
        """Write the recorded edges into one graph.

        ``left`` (the traced builder's) lists the parameters left to the base optimizer; the
        chain builder passes none and refuses parameters no layer claimed.
        """
        if left is None:
            missing = [n for n, p in self.model.named_parameters() if id(p) not in self.seen]
            if missing:
                raise ModelError(f"Parameter {missing[0]} is not part of a supported layer.")
        node_map, n_nodes = self._node_map()
        if node_map is not None:
            for blk in self.blocks:
                blk.src, blk.dst = node_map[blk.src], node_map[blk.dst]
            self.aux = [(node_map[a], node_map[b], t) for a, b, t in self.aux]
        n_aux = sum(len(src) for src, _, _ in self.aux)
        total = self.num_param_edges + n_aux + n_nodes
        edge_index = torch.empty(2, total, dtype=torch.long)
        edge_type = torch.empty(total, dtype=torch.long)
        start = 0
        for blk in self.blocks:
            end = start + blk.size
            a, b = (1, 0) if blk.reverse else (0, 1)
            shape = (len(blk.src), len(blk.dst))
            # Filling preallocated rows in place keeps peak memory at the final graph's size.
            edge_index[a, start:end].view(shape).copy_(blk.src.view(-1, 1).expand(shape))
            edge_index[b, start:end].view(shape).copy_(blk.dst.view(1, -1).expand(shape))
            edge_type[start:end] = blk.edge_type
            start = end
        for src, dst, kind in self.aux:
            end = start + len(src)
            edge_index[0, start:end] = src
            edge_index[1, start:end] = dst
            edge_type[start:end] = kind
            start = end
        edge_index[:, start:] = torch.arange(n_nodes)
        edge_type[start:] = EDGE_TYPES["self_loop"]
        return ParamGraph(
            edge_index=edge_index,
            edge_type=edge_type,
            num_nodes=n_nodes,
            num_param_edges=self.num_param_edges,
            segments=tuple(self.segments),
            param_shapes=dict(self.param_shapes),
            left=tuple(left or ()),
        )
