"""The layers of the NiNo networks: PyG ``MessagePassing`` modules and the MLPs around them.

Module and parameter names are those of the published checkpoints (see ``workers.nino.model``),
so that the models built from these layers load them strictly.

:class:`FiLMConv` is ``message``/mean-``aggregate``/``update`` and :class:`EdgeUpdate` an
``edge_update`` without aggregation, so the full-graph pass is plain ``propagate`` /
``edge_updater``. Each layer also offers the pieces the edge-chunked inference of
``NiNoModel.predict`` streams with (``node_terms``, ``messages_from_terms``, ``update``,
``from_terms``): ``propagate`` aggregates one edge set at a time, so a mean over edges that
arrive in chunks is summed in place by the caller instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

__all__ = ["MLP", "EdgeUpdate", "FiLMConv", "NeuronGNN"]


class MLP(nn.Module):
    """Linear layers with SiLU between them (none after the last one).

    They live in ``self.fc`` so that parameter names (``fc.0``, ``fc.2``, ...) are the
    published ones: activations take the odd indices.
    """

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            if i:
                layers.append(nn.SiLU())
            layers.append(nn.Linear(size_in, size_out))
        self.fc = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)

    def forward_rows(self, x: Tensor, rows: Tensor | None) -> Tensor:
        """Like ``forward`` but computes only the given output units of the last layer.

        Used to evaluate one forecast horizon instead of all of them: the last layer is the
        widest one for the output head (360 units), so this saves most of its cost.
        """
        *hidden, last = self.fc
        for layer in hidden:
            x = layer(x)
        if rows is None:
            return last(x)
        return F.linear(x, last.weight[rows], last.bias[rows])


class FiLMConv(MessagePassing):
    """One message-passing layer: FiLM-modulated messages, mean aggregation, node MLP.

    For an edge ``j -> i`` (PyG's ``source_to_target`` flow: ``x_j`` is the source, ``x_i``
    the target) with features ``e``: ``(scale, shift) = edge_encoder(e)`` and the message is
    ``scale * pre([x_i, x_j]) + shift``. The new node state is
    ``lin(post([x_i, mean_j message]))``. ``pre_nns``/``post_nns`` are lists of one "tower"
    each because that is how the published checkpoint names them.
    """

    def __init__(self, hid: int) -> None:
        super().__init__(aggr="mean")
        self.hid = hid
        self.edge_encoder = nn.Linear(hid, 2 * hid)
        self.pre_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.post_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.lin = nn.Linear(hid, hid)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Full-graph layer (before the activation), written as the paper states it."""
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i: Tensor, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        """FiLM-modulated message of every edge ``j -> i``."""
        scale, shift = self.edge_encoder(edge_attr).chunk(2, dim=-1)
        return scale * self.pre_nns[0](torch.cat([x_i, x_j], dim=-1)) + shift

    def update(self, inputs: Tensor, x: Tensor) -> Tensor:
        """New node states from the old ones ``x`` and their aggregated messages ``inputs``."""
        return self.lin(self.post_nns[0](torch.cat([x, inputs], dim=-1)))

    def node_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``pre([x_i, x_j])`` into per-node terms ``(a, b)`` with ``pre = a[i] + b[j]``.

        The pre-message layer is linear, so it can be applied to the N nodes once instead of
        to the E edges; an edge then only gathers and adds. This is what makes message
        passing over 10^8 edges cheap in both time and memory.
        """
        weight, bias = self.pre_nns[0][0].weight, self.pre_nns[0][0].bias
        as_dst = F.linear(x, weight[:, : self.hid], bias)
        as_src = F.linear(x, weight[:, self.hid :])
        return as_dst, as_src

    def messages_from_terms(
        self, edge_attr: Tensor, src: Tensor, dst: Tensor, terms: tuple[Tensor, Tensor]
    ) -> Tensor:
        """Messages of a chunk of edges, given :meth:`node_terms` of the current nodes.

        Equal to :meth:`message` up to float rounding (the linear layer is split, not changed).
        """
        as_dst, as_src = terms
        scale, shift = self.edge_encoder(edge_attr).chunk(2, dim=-1)
        return scale * (as_dst[dst] + as_src[src]) + shift


class EdgeUpdate(MessagePassing):
    """Recompute edge features from the edge and its end nodes (replaces, no residual).

    ``e' = lin1(SiLU(lin_e(e) + lin_s(x_src) + lin_t(x_dst)))``: a PyG ``edge_update`` with
    no aggregation. ``lin_s``/``lin_t`` are applied to the nodes before gathering, which is the
    same as applying them per edge and costs N instead of E rows.
    """

    def __init__(self, hid: int) -> None:
        super().__init__(aggr=None)
        self.lin_e = nn.Linear(hid, hid)
        self.lin_s = nn.Linear(hid, hid)
        self.lin_t = nn.Linear(hid, hid)
        self.lin1 = nn.Linear(hid, hid)

    def forward(self, edge_attr: Tensor, x: Tensor, edge_index: Tensor) -> Tensor:
        """Full-graph edge update."""
        return self.edge_updater(edge_index, e=edge_attr, s=self.lin_s(x), t=self.lin_t(x))

    def edge_update(self, e: Tensor, s_j: Tensor, t_i: Tensor) -> Tensor:
        """New features of every edge ``j -> i`` from ``e``, ``lin_s(x_j)`` and ``lin_t(x_i)``."""
        return self.from_terms(e, s_j, t_i)

    def from_terms(self, edge_attr: Tensor, src_term: Tensor, dst_term: Tensor) -> Tensor:
        """Edge update for a chunk, given ``lin_s(x)[src]`` and ``lin_t(x)[dst]``."""
        return self.lin1(F.silu(self.lin_e(edge_attr) + src_term + dst_term))


class NeuronGNN(nn.Module):
    """The message-passing stack: ``num_layers`` convs, ``num_layers - 1`` edge updates."""

    def __init__(self, hid: int, num_layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([FiLMConv(hid) for _ in range(num_layers)])
        self.edge_update = nn.ModuleList([EdgeUpdate(hid) for _ in range(num_layers - 1)])
