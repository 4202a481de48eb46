"""The NiNo nowcasting networks: our implementation of the published architectures.

Two models read the same neural-graph inputs and return, for every edge of the graph of
parameters, deltas for ``seq_len`` (40) future horizons at each of ``max_feat_size`` (9)
feature slots:

* :class:`NiNoModel` — the NiNo GNN (Knyazev et al., ICLR 2025). Node features are
  Laplacian positional encodings, edge features are the last ``ctx`` scaled states of the
  parameters on that edge. Three FiLM-modulated message-passing layers with mean aggregation
  and SiLU; after each of the first two, every edge feature is recomputed from itself and its
  two end nodes. An MLP reads the horizons off the final edge features.
* :class:`WNNPlusModel` — "WNN+", the per-parameter MLP baseline released with it: no
  message passing, every parameter (every feature slot of every edge) is nowcast from its own
  ``ctx`` states and its layer-type embedding.

Module and parameter names mirror the published checkpoints so that
``load_state_dict(strict=True)`` accepts them unchanged. The exact wiring (no residuals inside
the GNN, no activation after the input projections, edge updates that replace rather than add
to the edge features, ``[x_dst, x_src]`` order, scale before shift) was pinned down against the
reference's golden outputs on FM/16 (``tests/engine/test_engine_nino_model.py``).

Both models offer :meth:`~_NowcastModel.predict`, the inference path: it adds the residual
(the last context state), can evaluate a single horizon only, and with ``edge_chunk`` streams
over the edges so that memory beyond the inputs and outputs is O(nodes + chunk), whatever the
number of edges. Inputs may stay on the CPU while the model runs on a GPU; chunks are moved
over one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoints import load_checkpoint

__all__ = [
    "NiNoConfig",
    "NiNoModel",
    "WNNPlusModel",
    "load_model",
]


@dataclass(frozen=True)
class NiNoConfig:
    """Hyper-parameters of a NiNo or WNN+ model; the defaults are the published ones.

    Field names are the published constructor argument names, so a checkpoint's
    ``model_args`` map onto them directly. ``gnn`` selects the architecture (``False`` is
    WNN+). ``layers`` counts message-passing layers for the GNN and hidden layers of the
    per-parameter MLP for WNN+. ``dms`` (direct multi-step: all ``seq_len`` horizons from one
    output layer) is the only supported forecasting mode.
    """

    gnn: bool = True
    dms: bool = True
    hid: int = 128
    layers: int = 3
    ctx: int = 5
    max_feat_size: int = 9
    seq_len: int = 40
    lpe: int = 8
    edge_types: int = 15
    wte_pos_enc: bool = False

    @classmethod
    def from_model_args(cls, model_args: Mapping[str, Any]) -> NiNoConfig:
        """Build a config from a checkpoint's ``model_args``, refusing anything unknown.

        Unknown arguments are an error rather than ignored: any of them could change the
        computation without changing a parameter shape, and then strict loading would not
        notice.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(model_args) - known)
        if unknown:
            raise ValueError(f"unsupported NiNo model_args {unknown}; known: {sorted(known)}")
        config = cls(**dict(model_args))
        if config.wte_pos_enc:
            raise ValueError(
                "wte_pos_enc=True (the GPT-2 vocabulary embedding variant) is not supported; "
                "use the published nino_no_posw checkpoint."
            )
        if not config.dms:
            raise ValueError("dms=False (autoregressive forecasting) is not supported")
        return config


class _MLP(nn.Module):
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


def _mean_aggregate(messages: Tensor, dst: Tensor, in_degree: Tensor) -> Tensor:
    """Mean of incoming messages per node (0 for nodes without incoming edges)."""
    total = messages.new_zeros(in_degree.shape[0], messages.shape[1])
    total.index_add_(0, dst, messages)
    return total / in_degree.clamp(min=1).to(messages.dtype).unsqueeze(1)


class FiLMConv(nn.Module):
    """One message-passing layer: FiLM-modulated messages, mean aggregation, node MLP.

    For an edge ``j -> i`` with features ``e``: ``(scale, shift) = edge_encoder(e)`` and the
    message is ``scale * pre([x_i, x_j]) + shift``. The new node state is
    ``lin(post([x_i, mean_j message]))``. ``pre_nns``/``post_nns`` are lists of one "tower"
    each because that is how the published checkpoint names them.
    """

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.hid = hid
        self.edge_encoder = nn.Linear(hid, 2 * hid)
        self.pre_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.post_nns = nn.ModuleList([nn.Sequential(nn.Linear(2 * hid, hid))])
        self.lin = nn.Linear(hid, hid)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Full-graph layer (before the activation), written as the paper states it."""
        src, dst = edge_index
        scale, shift = self.edge_encoder(edge_attr).chunk(2, dim=-1)
        messages = scale * self.pre_nns[0](torch.cat([x[dst], x[src]], dim=-1)) + shift
        in_degree = torch.bincount(dst, minlength=x.shape[0])
        return self.update(x, _mean_aggregate(messages, dst, in_degree))

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
        """Messages of a chunk of edges, given :meth:`node_terms` of the current nodes."""
        as_dst, as_src = terms
        scale, shift = self.edge_encoder(edge_attr).chunk(2, dim=-1)
        return scale * (as_dst[dst] + as_src[src]) + shift

    def update(self, x: Tensor, aggregated: Tensor) -> Tensor:
        """New node states from the old ones and their aggregated messages."""
        return self.lin(self.post_nns[0](torch.cat([x, aggregated], dim=-1)))


class EdgeUpdate(nn.Module):
    """Recompute edge features from the edge and its end nodes (replaces, no residual).

    ``e' = lin1(SiLU(lin_e(e) + lin_s(x_src) + lin_t(x_dst)))``.
    """

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.lin_e = nn.Linear(hid, hid)
        self.lin_s = nn.Linear(hid, hid)
        self.lin_t = nn.Linear(hid, hid)
        self.lin1 = nn.Linear(hid, hid)

    def forward(self, edge_attr: Tensor, x: Tensor, edge_index: Tensor) -> Tensor:
        """Full-graph edge update."""
        src, dst = edge_index
        return self.from_terms(edge_attr, self.lin_s(x)[src], self.lin_t(x)[dst])

    def from_terms(self, edge_attr: Tensor, src_term: Tensor, dst_term: Tensor) -> Tensor:
        """Edge update for a chunk, given ``lin_s(x)[src]`` and ``lin_t(x)[dst]``."""
        return self.lin1(F.silu(self.lin_e(edge_attr) + src_term + dst_term))


class _NeuronGNN(nn.Module):
    """The message-passing stack: ``num_layers`` convs, ``num_layers - 1`` edge updates."""

    def __init__(self, hid: int, num_layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([FiLMConv(hid) for _ in range(num_layers)])
        self.edge_update = nn.ModuleList([EdgeUpdate(hid) for _ in range(num_layers - 1)])


def _chunks(num_edges: int, edge_chunk: int | None) -> Iterator[slice]:
    size = max(num_edges if edge_chunk is None else edge_chunk, 1)
    for start in range(0, num_edges, size):
        yield slice(start, min(start + size, num_edges))


@dataclass(frozen=True)
class _Plan:
    """How :meth:`_NowcastModel.predict` runs: output rows, chunking and edge sampling."""

    rows: Tensor | None
    edge_chunk: int | None
    edge_sample_ratio: float
    generator: torch.Generator | None


class _NowcastModel(nn.Module):
    """What NiNo and WNN+ share: config, checkpoint loading, input checks, residual."""

    config: NiNoConfig

    def __init__(self, config: NiNoConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def from_checkpoint(
        cls, path_or_name: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
    ) -> Self:
        """Build the model its checkpoint's ``model_args`` describe and load it strictly.

        ``path_or_name`` is a file path or a published name (``nino_no_posw``, ``nino_mlp``,
        ``nino_mlp_h32``) looked up in ``$NINO_CHECKPOINT_DIR``. The model is returned in eval
        mode. A checkpoint of the other architecture is refused; :func:`load_model` picks it.
        """
        checkpoint = load_checkpoint(path_or_name)
        config = NiNoConfig.from_model_args(checkpoint.model_args)
        model_cls = NiNoModel if config.gnn else WNNPlusModel
        if not issubclass(model_cls, cls):
            raise ValueError(
                f"{checkpoint.path} holds a {model_cls.__name__} (model_args="
                f"{checkpoint.model_args}), not a {cls.__name__}; use load_model()."
            )
        model = model_cls(config)
        model.load_state_dict(checkpoint.state_dict, strict=True)
        return model.to(map_location).eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _check_edges(self, edge_index: Tensor, edge_type: Tensor, edge_attr: Tensor) -> int:
        cfg = self.config
        num_edges = edge_attr.shape[0]
        if edge_attr.dim() != 2 or edge_attr.shape[1] != cfg.max_feat_size * cfg.ctx:
            raise ValueError(
                f"edge_attr must be [E, {cfg.max_feat_size * cfg.ctx}] (max_feat_size x ctx, "
                f"column f*ctx + t), got {list(edge_attr.shape)}"
            )
        if edge_index.shape != (2, num_edges):
            raise ValueError(f"edge_index must be [2, {num_edges}], got {list(edge_index.shape)}")
        if edge_type.shape != (num_edges,):
            raise ValueError(f"edge_type must be [{num_edges}], got {list(edge_type.shape)}")
        if num_edges and not 0 <= int(edge_type.min()) <= int(edge_type.max()) < cfg.edge_types:
            raise ValueError(f"edge_type values must lie in [0, {cfg.edge_types})")
        return num_edges

    def _horizon_rows(self, k: int | None) -> Tensor | None:
        """Output units of horizon ``k`` (1-based) in the last layer's ``[slot, horizon]`` grid."""
        if k is None:
            return None
        if not 1 <= k <= self.config.seq_len:
            raise ValueError(f"horizon k must be in 1..{self.config.seq_len}, got {k}")
        slot_starts = torch.arange(self._output_slots(), device=self.device) * self.config.seq_len
        return slot_starts + (k - 1)

    def _output_slots(self) -> int:
        """How many feature slots the last layer's units are grouped into (horizons inside)."""
        return self.config.max_feat_size

    def _last_state(self, edge_attr: Tensor) -> Tensor:
        """The newest context state of every slot, ``[E, max_feat_size]``, in the model dtype."""
        cfg = self.config
        states = edge_attr.reshape(-1, cfg.max_feat_size, cfg.ctx)
        return states[:, :, -1].to(self.device, self.dtype)

    def _delta_chunks(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_attr: Tensor,
        pe: Tensor | None,
        plan: _Plan,
    ) -> Iterator[tuple[slice, Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def predict(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_attr: Tensor,
        pe: Tensor | None = None,
        k: int | None = None,
        *,
        edge_chunk: int | None = None,
        edge_sample_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Nowcast the edge states: last context state plus the predicted delta.

        Returns ``[E, max_feat_size]`` for one horizon ``k`` (1-based, in units of the context
        spacing), or ``[E, max_feat_size, seq_len]`` for all horizons when ``k`` is None. The
        values are in the scaled space of ``edge_attr``; reading them back into parameters
        and un-scaling is the caller's (the parameter graph's) job.

        With ``edge_chunk`` the edges are processed that many at a time and nothing of size
        E x hidden is ever held; the result equals the unchunked one up to float rounding.
        Inputs may live on another device than the model (e.g. on the host for a GPU model);
        the result is placed on ``edge_attr``'s device.

        ``edge_sample_ratio`` < 1 trades accuracy for speed on huge graphs: each message-passing
        layer averages the messages of a random fraction of each node's incoming edges (drawn
        with ``generator``, a CPU generator; self-loops are always kept), while every edge still
        gets a prediction. This is our own approximation, not a reproduction of any published
        option; at 1.0 (the default) the computation is exact. WNN+ has no message passing and
        ignores it.
        """
        num_edges = self._check_edges(edge_index, edge_type, edge_attr)
        if not 0.0 < edge_sample_ratio <= 1.0:
            raise ValueError(f"edge_sample_ratio must be in (0, 1], got {edge_sample_ratio}")
        if edge_chunk is not None and edge_chunk <= 0:
            raise ValueError(f"edge_chunk must be positive, got {edge_chunk}")
        plan = _Plan(self._horizon_rows(k), edge_chunk, edge_sample_ratio, generator)
        shape = (num_edges, self.config.max_feat_size)
        if k is None:
            shape += (self.config.seq_len,)
        out = torch.empty(shape, dtype=self.dtype, device=edge_attr.device)
        for part, delta in self._delta_chunks(edge_index, edge_type, edge_attr, pe, plan):
            last = self._last_state(edge_attr[part])
            if k is None:
                last = last.unsqueeze(-1)
            out[part] = (last + delta).to(out.device)
        return out


class NiNoModel(_NowcastModel):
    """The NiNo graph network; ``forward`` returns deltas ``[E, max_feat_size, seq_len]``.

    The last of the ``layers`` convolutions is kept for checkpoint compatibility but is not
    evaluated: the output is read from edge features, and there is no edge update after the
    last convolution (in the published model too its output is unused).
    """

    def __init__(self, config: NiNoConfig | None = None) -> None:
        config = config or NiNoConfig()
        if not config.gnn:
            raise ValueError("NiNoModel needs config.gnn=True; WNNPlusModel is the MLP baseline")
        super().__init__(config)
        hid = config.hid
        self.layer_embed = nn.Embedding(config.edge_types, hid)
        self.node_proj = _MLP([config.lpe, hid])
        self.edge_proj = _MLP([config.max_feat_size * config.ctx, hid])
        self.gnn = _NeuronGNN(hid, config.layers)
        self.edge_out = _MLP([hid, hid, config.max_feat_size * config.seq_len])

    def _embed_edges(self, edge_attr: Tensor, edge_type: Tensor) -> Tensor:
        # The edge-type embedding is added after the projection, with no activation between.
        return self.edge_proj(edge_attr) + self.layer_embed(edge_type)

    def forward(
        self, edge_index: Tensor, edge_type: Tensor, edge_attr: Tensor, pe: Tensor
    ) -> Tensor:
        """Raw model output (deltas before the residual) for all edges and horizons.

        ``edge_index`` [2, E] (row 0 source, row 1 target), ``edge_type`` [E],
        ``edge_attr`` [E, max_feat_size * ctx] with column ``f * ctx + t``, ``pe`` [N, lpe].
        Returns ``[E, max_feat_size, seq_len]``. This is the plain full-graph computation;
        :meth:`predict` is the memory-bounded one.
        """
        num_edges = self._check_edges(edge_index, edge_type, edge_attr)
        x = self.node_proj(pe)
        e = self._embed_edges(edge_attr, edge_type)
        # The last convolution is skipped: no edge update reads its output (see class doc).
        for conv, edge_update in zip(self.gnn.convs[:-1], self.gnn.edge_update, strict=True):
            x = F.silu(conv(x, edge_index, e))
            e = edge_update(e, x, edge_index)
        return self.edge_out(e).view(num_edges, self.config.max_feat_size, self.config.seq_len)

    def _delta_chunks(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_attr: Tensor,
        pe: Tensor | None,
        plan: _Plan,
    ) -> Iterator[tuple[slice, Tensor]]:
        """Deltas chunk by chunk, keeping only node-sized state between chunks.

        Edge features after ``l`` edge updates depend only on the edge's inputs and on node
        states, so instead of storing them for all E edges (E x hid floats, 51 GB for 10^8
        edges) each pass recomputes them chunk-wise from ``edge_attr``. That costs one extra
        edge projection per layer and one extra edge update for the output pass, and makes the
        extra memory O(N x hid + chunk x hid).
        """
        if pe is None:
            raise ValueError("NiNoModel needs the Laplacian positional encodings pe [N, lpe]")
        if pe.dim() != 2 or pe.shape[1] != self.config.lpe:
            raise ValueError(f"pe must be [N, {self.config.lpe}], got {list(pe.shape)}")
        device, dtype = self.device, self.dtype
        num_nodes, num_edges = pe.shape[0], edge_attr.shape[0]
        if num_edges and int(edge_index.max()) >= num_nodes:
            raise ValueError(f"edge_index refers to nodes beyond the {num_nodes} rows of pe")
        parts = list(_chunks(num_edges, plan.edge_chunk))

        # (lin_s(x)[·], lin_t(x)[·]) node tables of every edge update done so far.
        update_terms: list[tuple[Tensor, Tensor]] = []

        def edge_features(part: slice) -> tuple[Tensor, Tensor, Tensor]:
            src, dst = edge_index[:, part].to(device, torch.long)
            e = self._embed_edges(
                edge_attr[part].to(device, dtype), edge_type[part].to(device, torch.long)
            )
            done = self.gnn.edge_update[: len(update_terms)]
            for edge_update, (src_table, dst_table) in zip(done, update_terms, strict=True):
                e = edge_update.from_terms(e, src_table[src], dst_table[dst])
            return e, src, dst

        x = self.node_proj(pe.to(device, dtype))
        for conv, edge_update in zip(self.gnn.convs[:-1], self.gnn.edge_update, strict=True):
            terms = conv.node_terms(x)
            # In-place accumulation: the only buffers that span the graph are node-sized.
            total = x.new_zeros(num_nodes, self.config.hid)
            count = torch.zeros(num_nodes, dtype=torch.long, device=device)
            for part in parts:
                e, src, dst = edge_features(part)
                if plan.edge_sample_ratio < 1.0:
                    draw = torch.rand(dst.shape[0], generator=plan.generator).to(device)
                    keep = (draw < plan.edge_sample_ratio) | (src == dst)
                    e, src, dst = e[keep], src[keep], dst[keep]
                total.index_add_(0, dst, conv.messages_from_terms(e, src, dst, terms))
                count.index_add_(0, dst, torch.ones_like(dst))
            mean = total / count.clamp(min=1).to(dtype).unsqueeze(1)
            x = F.silu(conv.update(x, mean))
            update_terms.append((edge_update.lin_s(x), edge_update.lin_t(x)))

        for part in parts:
            e, _, _ = edge_features(part)
            delta = self.edge_out.forward_rows(e, plan.rows)
            if plan.rows is None:
                delta = delta.view(-1, self.config.max_feat_size, self.config.seq_len)
            yield part, delta


class WNNPlusModel(_NowcastModel):
    """WNN+: one MLP applied to every parameter separately; ``pe`` and ``edge_index`` unused.

    Each feature slot of each edge is a parameter with its own ``ctx`` states; the edge type
    embedding is shared by the slots of an edge. ``forward`` returns deltas
    ``[E, max_feat_size, seq_len]``, the same layout as :class:`NiNoModel`.
    """

    def __init__(self, config: NiNoConfig | None = None) -> None:
        config = config or NiNoConfig(gnn=False)
        if config.gnn:
            raise ValueError("WNNPlusModel needs config.gnn=False; NiNoModel is the GNN")
        super().__init__(config)
        hid = config.hid
        self.layer_embed = nn.Embedding(config.edge_types, hid)
        self.edge_proj = _MLP([config.ctx, hid])
        self.edge_mlp = _MLP([hid] * (config.layers + 1) + [config.seq_len])

    def _output_slots(self) -> int:
        return 1  # the MLP predicts one parameter (slot) at a time

    def _per_parameter(self, edge_type: Tensor, edge_attr: Tensor) -> Tensor:
        cfg = self.config
        states = edge_attr.reshape(-1, cfg.max_feat_size, cfg.ctx)
        return self.edge_proj(states) + self.layer_embed(edge_type).unsqueeze(1)

    def forward(
        self, edge_index: Tensor, edge_type: Tensor, edge_attr: Tensor, pe: Tensor | None = None
    ) -> Tensor:
        """Raw deltas ``[E, max_feat_size, seq_len]`` (same arguments as :class:`NiNoModel`)."""
        self._check_edges(edge_index, edge_type, edge_attr)
        return self.edge_mlp(self._per_parameter(edge_type, edge_attr))

    def _delta_chunks(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_attr: Tensor,
        pe: Tensor | None,
        plan: _Plan,
    ) -> Iterator[tuple[slice, Tensor]]:
        for part in _chunks(edge_attr.shape[0], plan.edge_chunk):
            hidden = self._per_parameter(
                edge_type[part].to(self.device, torch.long),
                edge_attr[part].to(self.device, self.dtype),
            )
            delta = self.edge_mlp.forward_rows(hidden, plan.rows)
            yield part, delta if plan.rows is None else delta.squeeze(-1)


def load_model(
    path_or_name: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> NiNoModel | WNNPlusModel:
    """Load any published NiNo checkpoint strictly, choosing the architecture from its args."""
    return _NowcastModel.from_checkpoint(path_or_name, map_location=map_location)
