"""Attention written with tensor ops, read from the traced data flow (used by ``traced``).

``q @ k.transpose(-2, -1)`` (or ``bmm``), a softmax, then ``@ v`` -- or one
``F.scaled_dot_product_attention`` -- is recognised by the neuron labels of its operands: the
query and key tensors hold one neuron per (head, head dimension) along their last axis, the
heads along a batch axis. The projections that made them were written as plain ``Linear``
edges when they ran; here they get their roles in the built-in GPT layout
(``workers.graphs.params.blocks.gpt2_block``):

* Query rows become type-7 edges, value rows type-9, each role with its own bias node.
* Keys run transposed (type 8, stored ``query neuron -> block input``): with as many key heads
  as query heads the key neurons are merged into the query neurons they are multiplied with,
  exactly as the GPT handler places them. With grouped-query attention (fewer key/value heads)
  the key neurons stay, and *every* query head of a group is joined to its group's key and
  value neurons (head edges, type 11), so swapping two query heads within a group is an exact
  symmetry of the graph (the handler attaches keys to the first head of the group only).
* One node per query head, joined to its query neurons and to its value neurons.
* The attention output carries the value neurons on to the output projection (its input
  ``h * head_dim + j`` is value dimension ``j`` of the kv head of query head ``h``).

Convention that differs from the published reference: the key bias joins the neurons the keys
sit on (the query neurons), not the block input; the reference's choice makes head swaps
non-isomorphic, and a key bias does not change attention's output (the softmax ignores a shift
shared by all keys), so no published weight relies on it.

Limitations (documented, tested): rotary position embeddings (RoPE) are read as what they are
for the graph -- a fixed rotation inside each query/key head -- and their pairing of dimensions
``j`` and ``j + head_dim / 2`` is not represented; attention scores combined with computed
features (ALiBi-like biases from parameters, relative position tables) are refused, naming the
op, as is any other use of the scores than masking, scaling, softmax and dropout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx

from workers.errors import ModelError
from workers.graphs.params import labels as L
from workers.graphs.params.container import EDGE_TYPES
from workers.graphs.params.labels import NO_NEURON, Val
from workers.graphs.params.tracing import where

#: Ops the attention scores may go through on their way to ``@ v``.
SCORE_OPS = frozenset(
    "softmax dropout masked_fill where to float type_as contiguous clone mul div add sub "
    "truediv".split()
)
PRODUCTS = frozenset({"matmul", "bmm", "scaled_dot_product_attention"})


@dataclass(frozen=True)
class Scores:
    """Attention scores: per flattened batch position (head), its query and key neurons."""

    q: Tensor  # [N, head_dim]
    k: Tensor  # [N, head_dim]
    batch: tuple[int, ...]  # the scores' batch shape (N is its product)


def _rows(node: fx.Node, val: Val, shape: torch.Size, seq_axis: int) -> Tensor:
    """Neuron rows ``[*batch, dim]`` of a per-head operand; refused if labels vary along the
    sequence axis (the tokens carry no neurons)."""
    if val.param is not None:
        raise ModelError(f"Attention at {where(node)} multiplies a parameter as a key/value.")
    labels = L.compact(L.full(val.labels, shape))
    seq = seq_axis % len(shape)
    if labels.shape[seq] != 1:
        raise ModelError(
            f"The product at {where(node)} mixes neurons across tokens; the parameter graph reads "
            "only attention of per-head queries, keys and values."
        )
    return L.full(labels, shape).select(seq, 0)  # a transposed key: [*batch, dim, seq]


def _batch_rows(rows: Tensor, batch: tuple[int, ...]) -> Tensor:
    return rows.expand(*batch, rows.shape[-1]).reshape(-1, rows.shape[-1])


class AttentionReader:
    """Places the attention it meets; ``writer`` is the traced ``LayerWriter``."""

    def __init__(self, writer: Any) -> None:
        self.w = writer
        self.b = writer.b

    # -- entry points ------------------------------------------------------------------------

    def product(self, node: fx.Node, op: str, args: Any, kwargs: Any,
                values: tuple[Any, Any], result: Any) -> Any:  # fmt: skip
        """``q @ k^T`` (scores) or a fused ``scaled_dot_product_attention``."""
        arg_values, kw_values = values
        if op == "scaled_dot_product_attention":
            return self.sdpa(node, args, kwargs, arg_values, kw_values, result)
        a, b = args[0], args[1]
        sa, sb = arg_values[0].shape, arg_values[1].shape
        if a.scores is not None or b.scores is not None:
            raise ModelError(f"Attention scores are multiplied oddly at {where(node)}.")
        q = _rows(node, a, sa, -2)  # [*batch, hd]
        k = _rows(node, b, sb, -1)  # [*batch, hd] (b is k transposed)
        batch = tuple(result.shape[:-2])
        scores = Scores(_batch_rows(q, batch), _batch_rows(k, batch), batch)
        self._check_rows(node, scores.q, scores.k)
        return Val(torch.full([1] * result.dim(), NO_NEURON, dtype=torch.long), scores=scores)

    def scores_op(self, node: fx.Node, op: str, args: Any, values: tuple[Any, Any],
                  result: Any) -> Any:  # fmt: skip
        """An op on attention scores: ``@ v`` places the attention; masking, scaling, softmax
        and dropout keep the scores; anything else is refused."""
        vals = [v for v in args if isinstance(v, Val)]
        scores = next(v for v in vals if v.scores is not None)
        if op in ("matmul", "bmm") and args[0] is scores and isinstance(args[1], Val):
            v_shape = values[0][1].shape
            v = _batch_rows(_rows(node, args[1], v_shape, -2), scores.scores.batch)
            self.place(node, scores.scores.q, scores.scores.k, v)
            out = v.view(*scores.scores.batch, 1, v.shape[-1]).expand(result.shape)
            return Val(L.compact(out))
        flows = [v for v in vals if v is not scores and v.has_neurons]
        if op in SCORE_OPS and not flows:
            return scores
        raise ModelError(
            f"The attention scores go through {op} ({where(node)})"
            + (" with computed features or parameters" if flows else "")
            + "; the parameter graph reads only masking, scaling, softmax and dropout of them."
        )

    def sdpa(self, node: fx.Node, args: Any, kwargs: Any, arg_values: Any, kw_values: Any,
             result: Any) -> Val:  # fmt: skip
        names = ("query", "key", "value", "attn_mask")
        vals = [args[i] if len(args) > i else kwargs.get(k) for i, k in enumerate(names)]
        tensors = [arg_values[i] if len(arg_values) > i else kw_values.get(k)
                   for i, k in enumerate(names)]  # fmt: skip
        if isinstance(vals[3], Val) and vals[3].has_neurons:
            raise ModelError(
                f"The attention mask at {where(node)} is computed from features or parameters; "
                "the parameter graph cannot place it."
            )
        if not all(isinstance(v, Val) for v in vals[:3]):
            raise ModelError(f"Attention at {where(node)} has a query, key or value that holds "
                             "no neurons.")  # fmt: skip
        q = _rows(node, vals[0], tensors[0].shape, -2)
        k = _rows(node, vals[1], tensors[1].shape, -2)
        v = _rows(node, vals[2], tensors[2].shape, -2)
        if q.dim() >= 2 and k.shape[-2] != q.shape[-2] and q.shape[-2] % max(k.shape[-2], 1) == 0:
            # enable_gqa: each kv head serves a consecutive group of query heads.
            group = q.shape[-2] // k.shape[-2]
            k, v = k.repeat_interleave(group, -2), v.repeat_interleave(group, -2)
        batch = tuple(result.shape[:-2])
        q, k, v = (_batch_rows(t, batch) for t in (q, k, v))
        self._check_rows(node, q, k)
        self.place(node, q, k, v)
        return Val(L.compact(v.view(*batch, 1, v.shape[-1]).expand(result.shape)))

    # -- placing -------------------------------------------------------------------------------

    @staticmethod
    def _check_rows(node: fx.Node, q: Tensor, k: Tensor) -> None:
        if bool((q == NO_NEURON).any()) or bool((k == NO_NEURON).any()):
            raise ModelError(f"Attention at {where(node)} reads a query or key that holds no "
                             "neurons (not made by a projection).")  # fmt: skip

    def place(self, node: fx.Node, q: Tensor, k: Tensor, v: Tensor) -> None:
        """Give the projections of ``q``, ``k``, ``v`` (rows ``[N, dim]`` per batch position)
        their roles, and add the head nodes."""
        if bool((v == NO_NEURON).any()):
            raise ModelError(f"Attention at {where(node)} reads values that hold no neurons.")
        q_heads, first = _unique_rows(q)
        k_of, v_of = k[first], v[first]
        # The same query head must always meet the same key and value neurons.
        head = {tuple(row): h for h, row in enumerate(q_heads.tolist())}
        pos = torch.tensor([head[tuple(row)] for row in q.tolist()], dtype=torch.long)
        if not (torch.equal(k_of[pos], k) and torch.equal(v_of[pos], v)):
            raise ModelError(f"Attention at {where(node)} pairs one query head with several "
                             "keys or values.")  # fmt: skip
        k_heads, kv_first = _unique_rows(k_of)
        kv = torch.tensor([_row_index(k_heads, r) for r in k_of])
        v_heads = v_of[kv_first]
        if not torch.equal(v_heads[kv], v_of):
            raise ModelError(f"Attention at {where(node)} shares keys but not values across "
                             "heads.")  # fmt: skip
        n_heads, n_kv = len(q_heads), len(k_heads)
        counts = torch.bincount(kv, minlength=n_kv)
        if n_heads % n_kv or not bool((counts == n_heads // n_kv).all()):
            raise ModelError(f"Attention at {where(node)} has kv groups of unequal size.")
        everything = torch.cat([q_heads.flatten(), k_heads.flatten(), v_heads.flatten()])
        if len(torch.unique(everything)) != len(everything):
            raise ModelError(f"Attention at {where(node)} reuses neurons across its queries, "
                             "keys and values (tied projections).")  # fmt: skip
        roles = [(q_heads.flatten(), "query", False), (k_heads.flatten(), "key", True),
                 (v_heads.flatten(), "value", False)]  # fmt: skip
        self._assign_roles(node, roles)
        grouped = n_heads != n_kv
        if not grouped:  # keys transposed onto the very query neurons they meet (GPT layout)
            self.b.merge_nodes(k_heads[kv].flatten(), q_heads.flatten())
        heads = self.b.nodes(n_heads)
        dim, v_dim = q_heads.shape[1], v_heads.shape[1]
        head_edge = EDGE_TYPES["head"]
        self.b.aux_edges(heads.repeat_interleave(dim), q_heads.flatten(), head_edge)
        self.b.aux_edges(heads.repeat_interleave(v_dim), v_heads[kv].flatten(), head_edge)
        if grouped:
            self.b.aux_edges(heads.repeat_interleave(dim), k_heads[kv].flatten(), head_edge)
        self.w.value_nodes.update(int(n) for n in v_heads.flatten())

    def _assign_roles(self, node: fx.Node, roles: list[tuple[Tensor, str, bool]]) -> None:
        """Split the Linear blocks that made ``roles``' neurons into typed pieces."""
        by_block: dict[int, list[tuple[int, int, str, bool]]] = {}
        owners: dict[int, tuple[Any, Any]] = {}
        for nodes, role, reverse in roles:
            found = self.w.producers.get(int(nodes[0]))
            if found is None:
                raise ModelError(
                    f"The {role}s of the attention at {where(node)} are not made by a Linear "
                    "projection the parameter graph can give that role."
                )
            weight, bias = found
            start = int(nodes[0]) - int(weight.dst[0])
            end = start + len(nodes)
            if end > len(weight.dst) or not torch.equal(weight.dst[start:end], nodes):
                raise ModelError(
                    f"The {role}s of the attention at {where(node)} are not one contiguous "
                    "range of a projection's outputs, in head order."
                )
            by_block.setdefault(id(weight), []).append((start, end, role, reverse))
            owners[id(weight)] = (weight, bias)
        for key, pieces in by_block.items():
            weight, bias = owners[key]
            pieces.sort()
            filled: list[tuple[int, int, str, bool]] = []
            cursor = 0
            for start, end, role, reverse in pieces:
                if start < cursor:
                    raise ModelError(f"Attention at {where(node)} overlaps its roles.")
                if start > cursor:
                    filled.append((cursor, start, "linear", False))
                filled.append((start, end, role, reverse))
                cursor = end
            if cursor < len(weight.dst):
                filled.append((cursor, len(weight.dst), "linear", False))
            self.b.split_block(weight, [(s, e, weight.src, EDGE_TYPES[r], rev)
                                        for s, e, r, rev in filled])  # fmt: skip
            if bias is not None:
                srcs = [bias.src] + [self.b.nodes(1) for _ in filled[1:]]
                self.b.split_block(bias, [(s, e, src, EDGE_TYPES["bias"], False)
                                          for (s, e, _, _), src in zip(filled, srcs, strict=True)])
            for n in weight.dst.tolist():
                self.w.producers.pop(n, None)  # a projection takes its roles once


def _unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct rows in order of first appearance, and where each first appears."""
    seen: dict[tuple[int, ...], int] = {}
    for i, row in enumerate(rows.tolist()):
        seen.setdefault(tuple(row), i)
    first = torch.tensor(list(seen.values()), dtype=torch.long)
    return rows[first], first


def _row_index(rows: Tensor, row: Tensor) -> int:
    return int(torch.nonzero((rows == row).all(dim=1))[0])
