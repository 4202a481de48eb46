"""The parameter graph ("neural graph") that NiNo reads: neurons as nodes, weights as edges.

Conventions follow the published NiNo ones (``docs/NINO.md``) and reproduce the reference's
FM/16 graph exactly (same node order, edge order, edge types and features):

* Nodes are neurons. The input neurons of the first layer come first; every layer then adds,
  in parameter order, one node per 1-D parameter (bias) followed by its output neurons. Norm
  layers add one node per affine vector (weight, then bias) joined to the neurons they scale.
* Each weight element ``W[o, i, ...]`` is a directed edge input ``i`` -> output ``o``. Edges of
  one parameter form a contiguous source-major block (edge ``start + i * n_out + o``); conv
  kernels (at most 3x3) fill the first ``prod(kernel_size)`` of the 9 feature positions, all
  other parameters only position 0.
* Edges that hold parameters come first, in ``model.named_parameters()`` order. Auxiliary
  edges follow (residual one-to-one edges, attention-head edges; feature 1.0), then one
  self-loop per node (feature 2.0), as in the reference.

Transformers (built-in ``transformer`` and ``llama`` families):

* Token embedding: one node per token id, edges token -> embedding neuron (type 5); learned
  position embedding: one node per position joined to the same embedding neurons (type 6).
* Attention: query neurons get edges from the block input (type 7); key weights run transposed,
  from the query neuron of the same head dimension back to the block input (type 8), so keys
  need no neurons of their own; value neurons get edges from the block input (type 9). One node
  per head joins (head -> neuron, type 11) that head's query and value neurons. The output
  projection reads the value neurons. Fused ``qkv`` tensors are split into these three roles;
  their biases become three nodes, joined to the query neurons, the block input (the key
  layer's outputs once transposed, as in the reference) and the value neurons.
* Grouped-query attention: key/value head ``g`` serves query heads ``g*G .. g*G+G-1``; its key
  rows run from the query neurons of head ``g*G`` and the output projection reads, for query
  head ``h``, the value neurons of head ``h // G`` (so node pairs repeat: multi-edges).
* SwiGLU: gate and up projections share one set of hidden neurons (two edges per pair).
* Residual connections are one-to-one edges (type 10) from the block's input neurons to the
  neurons that receive the sum; those neurons are the stream from then on.

Layers are read as a chain in registration order (as the reference does), which is only sound
for chains; so besides plain containers (``Sequential``, ``ModuleList``, ``ModuleDict``) and the
model's own top module, only the built-in blocks whose data flow is known here are accepted
(the built-in ``ResidualBlock`` gets residual edges around its two convolutions). Anything else
with parameters raises ``ModelError`` naming the layer, and so does a layer whose input width
differs from the previous layer's output width. A custom top module is trusted to be a chain:
its ``forward`` is not read, so a skip connection written there would be missed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from workers.common import ModelError
from workers.zoo import builtin

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


@dataclass(frozen=True)
class ParamSegment:
    """Where rows ``row_start:row_end`` (dim 0) of one parameter live among the edges.

    The rows occupy the ``n_src * n_dst`` edges from ``edge_start`` on, source-major. Normally
    dim 0 indexes destinations (``W[o, i, *kernel]`` -> edge ``edge_start + i * n_dst + o``,
    positions ``0..kernel-1``); for embeddings (``src_major``) dim 0 indexes the sources
    (``W[v, j]`` -> edge ``edge_start + v * n_dst + j``).
    """

    name: str
    row_start: int
    row_end: int
    edge_start: int
    n_src: int
    n_dst: int
    kernel: int = 1
    src_major: bool = False

    @property
    def edge_end(self) -> int:
        """One past the last edge of the segment."""
        return self.edge_start + self.n_src * self.n_dst


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
    _lpe: dict[int, Tensor] = field(default_factory=dict, repr=False)

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
        parts = []
        for seg in self.segments:
            if seg.name != name:
                continue
            k = torch.arange(seg.kernel)
            if seg.src_major:
                edge = seg.edge_start + torch.arange(seg.n_src * seg.n_dst)
                parts.append(edge * MAX_FEAT)
            else:
                o = torch.arange(seg.n_dst).view(-1, 1, 1)
                i = torch.arange(seg.n_src).view(1, -1, 1)
                edge = seg.edge_start + i * seg.n_dst + o
                parts.append((edge * MAX_FEAT + k.view(1, 1, -1)).reshape(-1))
        if not parts:
            raise KeyError(f"no parameter {name!r} in the graph")
        return torch.cat(parts)

    def to_pyg(self, edge_attr: Tensor | None = None, lpe: Tensor | None = None) -> Data:
        """A PyG ``Data`` with this structure, the given edge features and node encodings."""
        data = Data(edge_index=self.edge_index, edge_type=self.edge_type, num_nodes=self.num_nodes)
        if edge_attr is not None:
            data.edge_attr = edge_attr
        if lpe is not None:
            data.lpe = lpe
        return data

    def lpe(self, k: int = 8, cache_dir: str | None = None) -> Tensor:
        """Laplacian eigenvector positional encoding [num_nodes, k] (see ``lpe.laplacian_pe``)."""
        from workers.graphs.lpe import laplacian_pe

        if k not in self._lpe:
            self._lpe[k] = laplacian_pe(self.edge_index, self.num_nodes, k, cache_dir=cache_dir)
        return self._lpe[k]


@dataclass
class _Block:
    """A dense block of edges from every ``src`` node to every ``dst`` node (source-major)."""

    src: Tensor
    dst: Tensor
    edge_type: int
    reverse: bool = False  # store the edges as dst -> src (transposed key weights)

    @property
    def size(self) -> int:
        return len(self.src) * len(self.dst)


class _Builder:
    """Walks a model once, allocating nodes and recording edge blocks; ``finish`` fills them."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
        self.num_nodes = 0
        self.num_param_edges = 0
        self.blocks: list[_Block] = []
        self.aux: list[tuple[Tensor, Tensor, int]] = []
        self.segments: list[ParamSegment] = []
        self.param_shapes: dict[str, torch.Size] = {}
        self.seen: set[int] = set()

    # -- allocation -------------------------------------------------------------------------

    def nodes(self, n: int) -> Tensor:
        ids = torch.arange(self.num_nodes, self.num_nodes + n)
        self.num_nodes += n
        return ids

    def name_of(self, module: nn.Module) -> str:
        return self.names.get(id(module), "") or "(model)"

    def param(self, module: nn.Module, attr: str) -> tuple[str, Tensor]:
        prefix = self.names.get(id(module), "")
        name = f"{prefix}.{attr}" if prefix else attr
        tensor = getattr(module, attr)
        if id(tensor) in self.seen:
            raise ModelError(
                f"Parameter {name} is shared with another layer; tied parameters are not "
                "supported by the parameter graph."
            )
        self.seen.add(id(tensor))
        self.param_shapes[name] = tensor.shape
        return name, tensor

    def block(
        self,
        name: str,
        rows: tuple[int, int],
        src: Tensor,
        dst: Tensor,
        edge_type: int,
        kernel: int = 1,
        src_major: bool = False,
        reverse: bool = False,
    ) -> None:
        """Record the edges holding rows ``rows`` of parameter ``name``."""
        self.segments.append(
            ParamSegment(
                name, rows[0], rows[1], self.num_param_edges, len(src), len(dst), kernel, src_major
            )
        )
        self.blocks.append(_Block(src, dst, edge_type, reverse))
        self.num_param_edges += len(src) * len(dst)

    def pairs(self, src: Tensor, dst: Tensor, edge_type: int) -> None:
        """Record auxiliary one-to-one edges ``src[j] -> dst[j]`` (no parameter)."""
        self.aux.append((src, dst, edge_type))

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
        self.block(w_name, (0, n_out), src, out, edge_type, kernel)
        if bias_node is not None:
            b_name, _ = self.param(module, "bias")
            self.block(b_name, (0, n_out), bias_node, out, EDGE_TYPES["bias"])
        return out

    def linear(self, module: nn.Linear, current: Tensor | None, edge_type: int = 1) -> Tensor:
        return self.dense(module, current, module.in_features, module.out_features, edge_type)

    def conv(self, module: nn.Module, current: Tensor | None) -> Tensor:
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
            self.block(name, (0, len(neurons)), self.nodes(1), neurons, edge_type)
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
        self.block(name, (0, rows), src, dst, edge_type, src_major=True)
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

    # -- composite modules -------------------------------------------------------------------

    def module(self, module: nn.Module, current: Tensor | None, root: bool = False) -> Tensor:
        """Any module: dispatch known blocks, walk containers, read leaves."""
        handler = _HANDLERS.get(type(module))
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

    def residual_cnn_block(self, block: builtin.ResidualBlock, current: Tensor | None) -> Tensor:
        x = self.inputs(current, block.conv1.in_channels, block.conv1)
        out = self.conv(block.conv2, self.conv(block.conv1, x))
        self.pairs(x, out, EDGE_TYPES["residual"])
        return out

    def char_transformer(self, model: builtin.CharTransformer, current: Tensor | None) -> Tensor:
        stream = self.embedding(model.tok_emb, None, EDGE_TYPES["token_embedding"])
        self.embedding(model.pos_emb, stream, EDGE_TYPES["position_embedding"])
        for block in model.blocks:
            stream = self.gpt_block(block, stream)
        stream = self.norm(model.ln_f, stream)
        return self.linear(model.head, stream)

    def gpt_block(self, block: builtin.Block, x: Tensor) -> Tensor:
        self.norm(block.ln1, x)
        attn = block.attn
        d, n_heads = attn.proj.in_features, attn.n_heads
        w_name, _ = self.param(attn.qkv, "weight")
        has_bias = attn.qkv.bias is not None
        bias_nodes = self.nodes(3) if has_bias else None
        q, v = self.nodes(d), self.nodes(d)
        heads = self.nodes(n_heads)
        self.block(w_name, (0, d), x, q, EDGE_TYPES["query"])
        self.block(w_name, (d, 2 * d), x, q, EDGE_TYPES["key"], reverse=True)
        self.block(w_name, (2 * d, 3 * d), x, v, EDGE_TYPES["value"])
        if bias_nodes is not None:
            b_name, _ = self.param(attn.qkv, "bias")
            # A bias joins its layer's outputs. The key layer runs transposed, so its "outputs"
            # are the block input neurons: the reference attaches the key bias there too.
            for j, (rows, neurons) in enumerate(
                (((0, d), q), ((d, 2 * d), x), ((2 * d, 3 * d), v))
            ):
                self.block(b_name, rows, bias_nodes[j : j + 1], neurons, EDGE_TYPES["bias"])
        head_dim = d // n_heads
        self.head_edges(heads, q, head_dim, 1)
        self.head_edges(heads, v, head_dim, 1)
        out = self.linear(attn.proj, v)
        self.pairs(x, out, EDGE_TYPES["residual"])
        self.norm(block.ln2, out)
        hidden = self.linear(block.mlp.fc1, out)
        mlp_out = self.linear(block.mlp.fc2, hidden)
        self.pairs(out, mlp_out, EDGE_TYPES["residual"])
        return mlp_out

    def head_edges(self, heads: Tensor, neurons: Tensor, head_dim: int, group: int) -> None:
        """Join head ``h`` to neurons of head ``h // group`` (``group`` > 1: shared kv heads)."""
        owner = torch.arange(len(heads)).repeat_interleave(head_dim)
        dims = torch.arange(head_dim).repeat(len(heads))
        self.pairs(heads[owner], neurons[(owner // group) * head_dim + dims], EDGE_TYPES["head"])

    def llama(self, model: builtin.Llama, current: Tensor | None) -> Tensor:
        stream = self.embedding(model.embed_tokens, None, EDGE_TYPES["token_embedding"])
        for layer in model.layers:
            stream = self.llama_block(layer, stream)
        stream = self.norm(model.norm, stream)
        return self.linear(model.lm_head, stream)

    def llama_block(self, block: builtin.LlamaBlock, x: Tensor) -> Tensor:
        self.norm(block.input_layernorm, x)
        attn = block.self_attn
        n_heads, n_kv, head_dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
        group = n_heads // n_kv
        x = self.inputs(x, attn.q_proj.in_features, attn.q_proj)
        q = self.linear(attn.q_proj, x, EDGE_TYPES["query"])
        # Key row g*head_dim + j meets query dimension j of every head in group g; its edges
        # run from the query neuron of the group's first head back to the block input.
        kv_rows = torch.arange(n_kv * head_dim)
        key_partner = q[(kv_rows // head_dim) * group * head_dim + kv_rows % head_dim]
        k_name, _ = self.param(attn.k_proj, "weight")
        if attn.k_proj.bias is not None or attn.v_proj.bias is not None:
            raise ModelError(f"Attention {self.name_of(attn)} has k/v biases; not supported.")
        self.block(k_name, (0, len(kv_rows)), x, key_partner, EDGE_TYPES["key"], reverse=True)
        v = self.linear(attn.v_proj, x, EDGE_TYPES["value"])
        heads = self.nodes(n_heads)
        self.head_edges(heads, q, head_dim, 1)
        self.head_edges(heads, v, head_dim, group)
        # The output projection's input h*head_dim + j is value dimension j of kv head h // G.
        cols = torch.arange(n_heads * head_dim)
        o_src = v[(cols // head_dim // group) * head_dim + cols % head_dim]
        out = self.dense(attn.o_proj, o_src, len(o_src), attn.o_proj.out_features, 1)
        self.pairs(x, out, EDGE_TYPES["residual"])
        self.norm(block.post_attention_layernorm, out)
        mlp = block.mlp
        gate_name, _ = self.param(mlp.gate_proj, "weight")
        up_name, _ = self.param(mlp.up_proj, "weight")
        if mlp.gate_proj.bias is not None or mlp.up_proj.bias is not None:
            raise ModelError(f"MLP {self.name_of(mlp)} has gate/up biases; not supported.")
        hidden = self.nodes(mlp.gate_proj.out_features)
        self.block(gate_name, (0, len(hidden)), out, hidden, EDGE_TYPES["linear"])
        self.block(up_name, (0, len(hidden)), out, hidden, EDGE_TYPES["linear"])
        mlp_out = self.linear(mlp.down_proj, hidden)
        self.pairs(out, mlp_out, EDGE_TYPES["residual"])
        return mlp_out

    # -- output ------------------------------------------------------------------------------

    def finish(self) -> ParamGraph:
        missing = [n for n, p in self.model.named_parameters() if id(p) not in self.seen]
        if missing:
            raise ModelError(f"Parameter {missing[0]} is not part of a supported layer.")
        n_aux = sum(len(src) for src, _, _ in self.aux)
        n_nodes = self.num_nodes
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
        )


_HANDLERS = {
    builtin.ResidualBlock: _Builder.residual_cnn_block,
    builtin.CharTransformer: _Builder.char_transformer,
    builtin.Llama: _Builder.llama,
}


def build_param_graph(model: nn.Module) -> ParamGraph:
    """Build the parameter graph of ``model`` from its module types and parameter shapes.

    Parameter values are never read, so a model on the meta device works (and costs no
    memory). Raises ``ModelError`` naming the first layer the graph cannot represent.
    """
    builder = _Builder(model)
    builder.module(model, None, root=True)
    return builder.finish()


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
        if seg.src_major:
            values = stacked.reshape(seg.n_src, seg.n_dst, 1, c)
        else:
            values = stacked.reshape(seg.n_dst, seg.n_src, seg.kernel, c).transpose(0, 1)
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
    pieces: dict[str, list[Tensor]] = {name: [] for name in graph.param_shapes}
    for seg in graph.segments:
        shape = graph.param_shapes[seg.name]
        block = feats[seg.edge_start : seg.edge_end].view(seg.n_src, seg.n_dst, MAX_FEAT)
        if seg.src_major:
            piece = block[:, :, 0]
        else:
            piece = block[:, :, : seg.kernel].transpose(0, 1)
        pieces[seg.name].append(piece.reshape(seg.row_end - seg.row_start, *shape[1:]))
    return {
        name: torch.cat(parts).contiguous() if len(parts) > 1 else parts[0].contiguous()
        for name, parts in pieces.items()
    }
