"""Edges of the parameterised ops met in a traced forward pass (used by ``traced``).

``LayerWriter`` turns one op of the traced program (a ``Linear``, a convolution, a norm, an
embedding, ``nn.MultiheadAttention``, a parameter used elementwise, a residual sum or a gate)
into nodes and edges through the ``GraphBuilder`` primitives, given the neuron labels of its
inputs (``labels``). The layout rules are those of ``workers.graphs.params.traced``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, fx, nn

from workers.errors import ModelError
from workers.graphs.params import labels as L
from workers.graphs.params.builder import _NORM_LAYERS, GraphBuilder
from workers.graphs.params.container import EDGE_TYPES, MAX_FEAT
from workers.graphs.params.labels import NO_NEURON, Val
from workers.graphs.params.tracing import where

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CHANNEL_FIRST_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)  # fmt: skip


class LayerWriter:
    """Adds the nodes and edges of single ops; ``left`` collects what the graph leaves out."""

    def __init__(
        self, builder: GraphBuilder, left: dict[str, str], params: dict[str, Tensor],
        large_kernels: str = "base",
    ) -> None:  # fmt: skip
        self.b = builder
        # Kernels above 3x3: "base" (left to the base optimizer) or "edges" (parallel edges);
        # see LARGE_KERNELS in workers.graphs.params.traced.
        self.large_kernels = large_kernels
        self.left = left
        self.params = params
        # Every name of a tied parameter -> its first name (the one ``named_parameters()``
        # keeps, which optimizers and checkpoints use): a parameter is placed under that name.
        first: dict[int, str] = {}
        self.canonical = {n: first.setdefault(id(t), n) for n, t in params.items()}
        # Embedding tables placed so far -> their row nodes (a tied output head reads them).
        self.embedded: dict[str, Tensor] = {}
        # Output neuron -> (weight block, bias block) of the Linear that made it (attention).
        self.producers: dict[int, tuple[Any, Any]] = {}
        # Value neurons of attention, which the output projection may read repeatedly (GQA).
        self.value_nodes: set[int] = set()

    @property
    def values(self) -> Tensor:
        """A boolean mask over node ids: the attention value neurons."""
        mask = torch.zeros(self.b.num_nodes, dtype=torch.bool)
        if self.value_nodes:
            mask[torch.tensor(sorted(self.value_nodes))] = True
        return mask

    # -- helpers -----------------------------------------------------------------------------

    def leave(self, name: str, reason: str) -> None:
        """Leave parameter ``name`` to the base optimizer, with the reason."""
        name = self.canonical.get(name, name)
        if name not in self.b.param_shapes:
            self.left.setdefault(name, reason)

    def claim(self, name: str) -> Tensor:
        name = self.canonical.get(name, name)
        if name in self.left or name in self.b.param_shapes:
            raise ModelError(
                f"Parameter {name} is used more than once in the forward (shared or tied "
                "weights); the parameter graph places every parameter once."
            )
        return self.b.claim(name, self.params[name])

    def channel_nodes(self, node: fx.Node, val: Any, axis: int, shape: torch.Size) -> Tensor:
        """The neurons along ``axis`` of an op input (fresh input nodes where there are none)."""
        axis %= len(shape)
        if not isinstance(val, Val):
            return self.b.nodes(shape[axis])
        if val.param is not None:
            raise ModelError(f"A parameter is fed to a layer as its input ({where(node)}).")
        labels = val.labels
        others = [a for a in L.varying_axes(labels) if a != axis]
        if others:
            raise ModelError(
                f"The input of {where(node)} mixes channels across positions (after a reshape "
                "the parameter graph cannot map back to channels)."
            )
        nodes = L.full(labels, shape)
        index = [0] * len(shape)
        index[axis] = slice(None)  # type: ignore[call-overload]
        nodes = nodes[tuple(index)].clone()
        missing = nodes == NO_NEURON
        if bool(missing.any()):
            nodes[missing] = self.b.nodes(int(missing.sum()))
        return nodes

    # -- dense layers --------------------------------------------------------------------------

    def dense(
        self,
        node: fx.Node,
        w_name: str,
        b_name: str | None,
        inputs: Tensor,
        n_out: int,
        edge_type: int,
        positions: int = 1,
        groups: int = 1,
        src_major: bool = False,
    ) -> Tensor:
        """Bias node, output neurons, weight edges (per group, per 9-position chunk), bias edges.

        ``inputs`` are the neurons of the weight's input columns; columns that repeat one
        channel in consecutive runs (a flatten of ``C x H x W``) become kernel positions.
        ``src_major``: the weight is stored ``[in, out]`` (``x @ W``, transformers' ``Conv1D``);
        its edges are those of the ``nn.Linear`` holding ``W.T``.
        """
        if w_name in self.embedded and not src_major and positions == 1 and groups == 1:
            return self.tied_head(node, w_name, b_name, inputs, n_out)
        src = inputs
        if len(torch.unique(inputs)) != len(inputs) and bool(self.values[inputs].all()):
            pass  # grouped-query attention: value neurons of a kv head read by each query head
        elif len(torch.unique(inputs)) != len(inputs):
            src, runs = _runs(inputs)
            if src is None or groups != 1 or src_major:
                self.leave(w_name, "its inputs repeat channels in an order the graph cannot map")
                src = None
            else:
                positions *= runs
        bias_node = self.b.nodes(1) if b_name is not None else None
        out = self.b.nodes(n_out)
        weight = bias = None
        if src is not None:
            self._weight_edges(w_name, src, out, edge_type, positions, groups, src_major)
            if w_name in self.b.param_shapes and edge_type == EDGE_TYPES["linear"]:
                weight = self.b.blocks[-1]
        if b_name is not None:
            self.claim(b_name)
            self.b.param_edges(b_name, (0, n_out), bias_node, out, EDGE_TYPES["bias"])
            bias = self.b.blocks[-1]
        if weight is not None and positions == 1 and groups == 1:
            # Projections that attention may later read as queries, keys or values.
            self.producers.update({int(n): (weight, bias) for n in out})
        return out

    def tied_head(self, node: fx.Node, w_name: str, b_name: str | None, inputs: Tensor,
                  n_out: int) -> Tensor:  # fmt: skip
        """An output head whose weight is an embedding table placed before (tied weights).

        As in the published graphs, which count a tied parameter once, the table stays where
        the embedding placed it (row ``v`` -> embedding neuron ``j`` holds ``W[v, j]``) and the
        head adds no weight edges: its output ``v`` is the embedding's row node ``v``, the
        node that holds every weight of that vocabulary entry. A bias of its own joins those
        nodes. Placing the table twice would hold every weight on two edges.
        """
        rows = self.embedded[w_name]
        if len(rows) != n_out or len(inputs) != self.params[w_name].shape[1]:
            raise ModelError(f"The weight {w_name} is used at {where(node)} with another shape "
                             "than its embedding's (tied weights).")  # fmt: skip
        if b_name is not None:
            self.claim(b_name)
            self.b.param_edges(b_name, (0, n_out), self.b.nodes(1), rows, EDGE_TYPES["bias"])
        return rows

    def _weight_edges(self, name: str, src: Tensor, out: Tensor, edge_type: int, positions: int,
                      groups: int, src_major: bool) -> None:  # fmt: skip
        if positions > MAX_FEAT and self.large_kernels == "base":
            self.leave(name, f"{positions} kernel positions: above 3x3, nowcasting them hurts")
            return
        self.claim(name)
        if src_major:
            self.b.param_edges(name, (0, len(src)), src, out, edge_type, src_major=True)
            return
        chunks = math.ceil(positions / MAX_FEAT)
        n_in, n_out = len(src) // groups, len(out) // groups
        for g in range(groups):
            src_g, out_g = src[g * n_in : (g + 1) * n_in], out[g * n_out : (g + 1) * n_out]
            for c in range(chunks):
                kernel = min(MAX_FEAT, positions - c * MAX_FEAT)
                self.b.param_edges(
                    name, (g * n_out, (g + 1) * n_out), src_g, out_g, edge_type, kernel,
                    pos_start=c * MAX_FEAT, pos_total=positions if chunks > 1 else 0,
                )  # fmt: skip

    def norm(self, node: fx.Node, neurons: Tensor, w_name: str | None, b_name: str | None) -> None:
        """Affine vectors of a norm: one node each, joined to the normalised neurons."""
        for name, edge_type in ((w_name, EDGE_TYPES["norm"]), (b_name, EDGE_TYPES["bias"])):
            if name is None:
                continue
            if self.params[name].dim() != 1:
                self.leave(name, "a norm over several dimensions has no one-node-per-vector form")
                continue
            self.claim(name)
            self.b.param_edges(name, (0, len(neurons)), self.b.nodes(1), neurons, edge_type)

    # -- modules -------------------------------------------------------------------------------

    def module(self, node: fx.Node, module: nn.Module, path: str, args: Any, kwargs: Any,
               values: tuple[Any, Any], result: Any) -> Any:  # fmt: skip
        arg_values, _ = values
        x, shape = (args[0] if args else None), arg_values[0].shape if arg_values else None
        name = f"{path}." if path else ""
        bias = f"{name}bias" if getattr(module, "bias", None) is not None else None
        if isinstance(module, nn.Linear):
            inputs = self.channel_nodes(node, x, -1, shape)
            canon = self.canonical
            out = self.dense(node, canon[f"{name}weight"], canon.get(bias) if bias else None,
                             inputs, module.out_features, EDGE_TYPES["linear"])  # fmt: skip
            return Val(L.along(out, result.dim() - 1, result.dim()))
        if isinstance(module, _CONVS):
            inputs = self.channel_nodes(node, x, 1, shape)
            out = self.dense(node, f"{name}weight", bias, inputs, module.out_channels,
                             EDGE_TYPES["conv"], math.prod(module.kernel_size), module.groups)
            return Val(L.along(out, 1, result.dim()))
        if isinstance(module, nn.Embedding):
            if isinstance(x, Val) and x.has_neurons:
                raise ModelError(f"Embedding {path} reads computed features, not token ids.")
            return self.embedding(self.canonical[f"{name}weight"], result)
        if isinstance(module, _NORM_LAYERS):
            axis = 1 if isinstance(module, _CHANNEL_FIRST_NORMS) else -1
            if getattr(module, "weight", None) is not None and module.weight.dim() != 1:
                self.leave(f"{name}weight", "a norm over several dimensions")
                if bias:
                    self.leave(bias, "a norm over several dimensions")
                return x
            neurons = self.channel_nodes(node, x, axis, shape)
            weight = f"{name}weight" if getattr(module, "weight", None) is not None else None
            self.norm(node, neurons, weight, bias)
            if isinstance(x, Val):
                return Val(x.labels)
            return Val(L.along(neurons, axis % len(shape), len(shape)))
        if isinstance(module, nn.MultiheadAttention):
            return self.attention(node, module, name, args, kwargs, values, result)
        if isinstance(module, nn.PReLU):
            self.leave(f"{name}weight", "PReLU slopes have no edge type in the published graphs")
            return Val(x.labels, act="prelu") if isinstance(x, Val) else None
        raise ModelError(
            f"Layer {path} ({type(module).__name__}) is not supported by the parameter graph."
        )

    def embedding(self, w_name: str, result: Tensor) -> Val:
        """An embedding table: one node per row, edges row -> embedding neuron."""
        self.claim(w_name)
        rows, width = self.params[w_name].shape
        src, dst = self.b.nodes(rows), self.b.nodes(width)
        self.b.param_edges(w_name, (0, rows), src, dst, EDGE_TYPES["token_embedding"],
                           src_major=True)  # fmt: skip
        self.embedded[w_name] = src
        return Val(L.along(dst, result.dim() - 1, result.dim()), embedding=self.b.blocks[-1])

    def attention(self, node: fx.Node, mha: nn.MultiheadAttention, name: str, args: Any,
                  kwargs: Any, values: tuple[Any, Any], result: Any) -> Any:  # fmt: skip
        """``nn.MultiheadAttention`` in the built-in GPT layout (see ``blocks.gpt2_block``)."""
        arg_values, kw_values = values
        names = ("query", "key", "value")
        vals = [args[i] if len(args) > i else kwargs.get(k) for i, k in enumerate(names)]
        tensors = [arg_values[i] if len(arg_values) > i else kw_values[k]
                   for i, k in enumerate(names)]  # fmt: skip
        q_in, k_in, v_in = (self.channel_nodes(node, v, -1, t.shape)
                            for v, t in zip(vals, tensors, strict=True))  # fmt: skip
        d, n_heads = mha.embed_dim, mha.num_heads
        has_bias = mha.in_proj_bias is not None
        bias_nodes = self.b.nodes(3) if has_bias else None
        q, v = self.b.nodes(d), self.b.nodes(d)
        heads = self.b.nodes(n_heads)
        roles = ((q_in, q, "query", False), (k_in, q, "key", True), (v_in, v, "value", False))
        if mha._qkv_same_embed_dim:
            w = f"{name}in_proj_weight"
            self.claim(w)
            for j, (src, dst, role, rev) in enumerate(roles):
                self.b.param_edges(w, (j * d, (j + 1) * d), src, dst, EDGE_TYPES[role],
                                   reverse=rev)  # fmt: skip
        else:
            for (src, dst, role, rev), attr in zip(roles, ("q", "k", "v"), strict=True):
                w = f"{name}{attr}_proj_weight"
                self.claim(w)
                self.b.param_edges(w, (0, d), src, dst, EDGE_TYPES[role], reverse=rev)
        if bias_nodes is not None:
            b = f"{name}in_proj_bias"
            self.claim(b)
            # The key layer runs transposed: its bias joins the key inputs, as in the reference.
            for j, neurons in enumerate((q, k_in, v)):
                self.b.param_edges(b, (j * d, (j + 1) * d), bias_nodes[j : j + 1], neurons,
                                   EDGE_TYPES["bias"])  # fmt: skip
        head_dim = d // n_heads
        self.b.head_edges(heads, q, head_dim, 1)
        self.b.head_edges(heads, v, head_dim, 1)
        for attr in ("bias_k", "bias_v"):
            if getattr(mha, attr, None) is not None:
                self.leave(f"{name}{attr}", "add_bias_kv has no place in the published layout")
        out_bias = f"{name}out_proj.bias" if mha.out_proj.bias is not None else None
        out = self.dense(node, f"{name}out_proj.weight", out_bias, v, mha.out_proj.out_features,
                         EDGE_TYPES["linear"])  # fmt: skip
        attn_out = result[0] if isinstance(result, tuple) else result
        val = Val(L.along(out, attn_out.dim() - 1, attn_out.dim()))
        return (val, None) if isinstance(result, tuple) else val

    # -- functional layers -----------------------------------------------------------------------

    def functional(self, node: fx.Node, op: str, args: Any, kwargs: Any,
                   values: tuple[Any, Any], result: Any) -> Any:  # fmt: skip
        """Layers written with functional ops and parameters (``F.linear``, ``F.layer_norm``,
        ``x @ W`` ...); NotImplemented for any other op."""
        arg_values, kw_values = values

        def param_at(i: int, key: str) -> str | None:
            val = args[i] if len(args) > i else kwargs.get(key)
            if val is None:
                return None
            if not isinstance(val, Val) or val.param is None or not _is_whole(val, self.params):
                raise ModelError(f"The {op} at {where(node)} uses a computed weight.")
            return val.param

        x, shape = args[0], arg_values[0].shape if isinstance(arg_values[0], Tensor) else None
        if op == "embedding":  # F.embedding(ids, weight); aten.embedding(weight, ids)
            w_at, ids_at = (0, 1) if isinstance(node.target, torch._ops.OpOverload) else (1, 0)
            ids = args[ids_at] if len(args) > ids_at else None
            if isinstance(ids, Val) and ids.has_neurons:
                raise ModelError(f"The embedding at {where(node)} reads computed features.")
            return self.embedding(str(param_at(w_at, "weight")), result)
        if op == "linear":
            w, b = param_at(1, "weight"), param_at(2, "bias")
            inputs = self.channel_nodes(node, x, -1, shape)
            out = self.dense(node, w, b, inputs, self.params[w].shape[0], EDGE_TYPES["linear"])
            return Val(L.along(out, result.dim() - 1, result.dim()))
        if op in ("conv1d", "conv2d", "conv3d"):
            w, b = param_at(1, "weight"), param_at(2, "bias")
            groups = arg_values[6] if len(arg_values) > 6 else kw_values.get("groups", 1)
            weight = self.params[w]
            inputs = self.channel_nodes(node, x, 1, shape)
            out = self.dense(node, w, b, inputs, weight.shape[0], EDGE_TYPES["conv"],
                             math.prod(weight.shape[2:]), int(groups))  # fmt: skip
            return Val(L.along(out, 1, result.dim()))
        if op == "addmm" and isinstance(args[2], Val) and args[2].param is not None:
            # bias + x @ W with W stored [in, out]: transformers' Conv1D (GPT-2's c_attn,
            # c_proj, c_fc), read as the nn.Linear holding W.T.
            features = args[1]
            if not isinstance(features, Val) or features.param is not None:
                raise ModelError(f"The addmm at {where(node)} multiplies the weight "
                                 f"{args[2].param} by a parameter, not by features.")  # fmt: skip
            if isinstance(args[0], Val) and args[0].param is None and args[0].has_neurons:
                raise ModelError(
                    f"The addmm at {where(node)} adds computed features to x @ {args[2].param}; "
                    "the parameter graph reads addmm only with a bias parameter (Conv1D)."
                )
            w = str(param_at(2, "mat2"))
            b = param_at(0, "input") if isinstance(args[0], Val) else None
            n_out = self.params[w].shape[1]
            if b is not None and tuple(self.params[b].shape) != (n_out,):
                raise ModelError(f"The addmm at {where(node)} adds a bias {b} of shape "
                                 f"{tuple(self.params[b].shape)}, not ({n_out},).")  # fmt: skip
            inputs = self.channel_nodes(node, features, -1, arg_values[1].shape)
            out = self.dense(node, w, b, inputs, n_out, EDGE_TYPES["linear"], src_major=True)
            return Val(L.along(out, result.dim() - 1, result.dim()))
        if op in ("matmul", "mm") and isinstance(args[1], Val) and args[1].param is not None:
            w = param_at(1, "other")
            if self.params[w].dim() != 2:
                raise ModelError(f"The {op} at {where(node)} uses a weight that is not 2-D.")
            inputs = self.channel_nodes(node, x, -1, shape)
            out = self.dense(node, w, None, inputs, self.params[w].shape[1],
                             EDGE_TYPES["linear"], src_major=True)  # fmt: skip
            return Val(L.along(out, result.dim() - 1, result.dim()))
        norms = {"layer_norm": (2, 3, -1), "rms_norm": (2, None, -1), "group_norm": (2, 3, 1),
                 "batch_norm": (3, 4, 1), "instance_norm": (3, 4, 1)}  # fmt: skip
        if isinstance(node.target, torch._ops.OpOverload):  # exported programs: aten schemas
            norms.update(batch_norm=(1, 2, 1), instance_norm=(1, 2, 1),
                         _native_batch_norm_legit_no_training=(1, 2, 1))  # fmt: skip
        if op in norms:
            wi, bi, axis = norms[op]
            w = param_at(wi, "weight")
            b = param_at(bi, "bias") if bi is not None else None
            neurons = self.channel_nodes(node, x, axis, shape)
            self.norm(node, neurons, w, b)
            out = Val(x.labels) if isinstance(x, Val) else None
            if isinstance(result, tuple):  # (output, saved statistics ...)
                return (out, *([None] * (len(result) - 1)))
            return out
        return NotImplemented

    # -- elementwise --------------------------------------------------------------------------

    def elementwise_param(self, node: fx.Node, op: str, param: Val, neurons: Tensor) -> None:
        """A parameter combined elementwise with features (``neurons`` broadcast against it).

        Placed when every element meets one neuron and the elements form rows over those
        neurons: ``[..., C]`` (one node per row: class tokens, position embeddings) or
        ``[C, 1, ...]`` (one node: layer scales, free biases). Otherwise left, with the reason.
        """
        name = str(param.param)
        tensor = self.params[name]
        elements, owner = torch.broadcast_tensors(param.labels, neurons)
        keep = owner != NO_NEURON
        found = torch.unique(torch.stack([elements[keep], owner[keep]]), dim=1)
        n = tensor.numel()
        if tensor.dim() == 0 or found.shape[1] != n or len(torch.unique(found[0])) != n:
            self.leave(name, f"used in {op} with features in a layout the graph cannot place")
            return
        neuron_of = torch.empty(n, dtype=torch.long)
        neuron_of[found[0]] = found[1]
        width = len(torch.unique(neuron_of))
        rows = neuron_of.view(-1, width)
        cols = neuron_of.view(width, -1)
        if bool((rows == rows[0]).all()):
            dst, src_major, n_src = rows[0], True, rows.shape[0]
        elif bool((cols == cols[:, :1]).all()):
            dst, src_major, n_src = cols[:, 0], False, cols.shape[1]
        else:
            self.leave(name, f"used in {op} with features in a layout the graph cannot place")
            return
        if op in ("mul", "div"):
            edge_type = EDGE_TYPES["norm"]
        elif op == "cat" or n_src > 1:
            edge_type = EDGE_TYPES["position_embedding"]
        else:
            edge_type = EDGE_TYPES["bias"]
        self.claim(name)
        src = self.b.nodes(n_src)
        if src_major:
            self.b.param_edges(name, (0, tensor.shape[0]), src, dst, edge_type, src_major=True)
        else:
            self.b.param_edges(name, (0, tensor.shape[0]), src, dst, edge_type)

    def join(self, node: fx.Node, op: str, a: Val, b: Val) -> Val:
        """Two feature tensors combined elementwise: a residual sum or a gate."""
        p = L.pairs(a.labels, b.labels)
        if p.shape[1] == 0:
            return Val(L.merged(a.labels, b.labels, keep_b=False), act=a.act or b.act)
        if not L.is_bijection(p):
            raise ModelError(
                f"The {op} at {where(node)} combines channels that do not pair one to one "
                "(broadcast across channels); the parameter graph cannot follow it."
            )
        if op in ("add", "sub") and a.embedding is not None and b.embedding is not None:
            # A second embedding summed into the first (positions): same neurons, as in GPT.
            raw, other, raw_side = (b, a, 1) if b.embedding is not None else (a, b, 0)
            raw.embedding.edge_type = EDGE_TYPES["position_embedding"]
            self.b.merge_nodes(p[raw_side], p[1 - raw_side])
            return Val(other.labels, act=other.act)
        if op in ("add", "sub") and torch.equal(torch.sort(p[0]).values, torch.sort(p[1]).values):
            # The same neurons, permuted, summed (rotary position embeddings: x * cos +
            # rotate_half(x) * sin): a fixed rotation inside the head, no edge. The pairing of
            # the rotated dimensions is not represented (``attention`` module docstring).
            in_order = [v for v in (a, b) if bool((v.labels.flatten().diff() >= 0).all())]
            kept = in_order[0] if in_order else a
            return Val(kept.labels, act=kept.act)
        if op in ("add", "sub"):
            newer_b = bool(p[1].max() > p[0].max())
            src, dst = (p[0], p[1]) if newer_b else (p[1], p[0])
            self.b.aux_edges(src, dst, EDGE_TYPES["residual"])
            return Val(L.merged(a.labels, b.labels, keep_b=newer_b))
        gate_b = _is_gate(b, a)
        src, dst = (p[1], p[0]) if gate_b else (p[0], p[1])
        self.b.aux_edges(src, dst, EDGE_TYPES["residual"])
        kept = a if gate_b else b
        return Val(L.merged(a.labels, b.labels, keep_b=not gate_b), act=kept.act)


# Nonlinearities whose output gates another tensor in ``a * b`` (squeeze-excitation, SwiGLU).
_GATES = frozenset({"sigmoid", "hardsigmoid", "tanh", "softmax"})


def _is_gate(b: Val, a: Val) -> bool:
    """Whether ``b`` gates ``a`` in ``a * b``: the side that went through a sigmoid-like
    nonlinearity (or any nonlinearity, when only one did); else the newer side."""
    b_gate, a_gate = b.act in _GATES, a.act in _GATES
    if b_gate != a_gate:
        return b_gate
    if (b.act is None) != (a.act is None):
        return b.act is not None
    return bool(b.labels.max() > a.labels.max())


def _runs(inputs: Tensor) -> tuple[Tensor | None, int]:
    """``inputs`` as distinct channels each repeated in one consecutive run: (channels, run)."""
    changes = torch.nonzero(inputs[1:] != inputs[:-1]).flatten()
    run = int(changes[0]) + 1 if len(changes) else len(inputs)
    if len(inputs) % run:
        return None, 0
    grid = inputs.view(-1, run)
    channels = grid[:, 0]
    if not bool((grid == channels.view(-1, 1)).all()) or len(torch.unique(channels)) != len(
        channels
    ):
        return None, 0
    return channels, run


def _is_whole(val: Val, params: dict[str, Tensor]) -> bool:
    tensor = params[str(val.param)]
    labels = L.full(val.labels, val.labels.shape)
    return tuple(labels.shape) == tuple(tensor.shape) and bool(
        (labels.reshape(-1) == torch.arange(tensor.numel())).all()
    )
