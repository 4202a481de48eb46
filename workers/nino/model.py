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
reference's golden outputs on FM/16 (``tests/engine/nino/test_model.py``).

The two graph layers are PyG ``MessagePassing`` modules: :class:`FiLMConv` is
``message``/mean-``aggregate``/``update`` and :class:`EdgeUpdate` an ``edge_update``, so the
full-graph :meth:`NiNoModel.forward` (the meta-training path) is plain ``propagate``. The
edge-chunked inference of :meth:`~_NowcastModel.predict` calls the same layers' pieces chunk by
chunk and sums messages in place into node-sized buffers, because ``propagate`` aggregates one
edge set at a time (a per-chunk ``propagate`` would allocate and add a nodes x hidden output for
every chunk and could not finish a mean). Against the plain-torch layers they replaced,
``bench/pyg.py`` measured no cost (``bench/results/pyg.json``, one CPU thread): chunked
``predict`` on the 3.49M-edge GPT-2 graph 27.6 s both, 401 MB peak tensor memory both; the
full-graph forward on FM/16 0.014 vs 0.015 s; a meta-training step on a 110k-edge graph
within noise (5.2 vs 5.0 s) and 1,635 instead of 1,743 MB.

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
from torch_geometric.data import Data

from .checkpoints import load_checkpoint
from .layers import MLP, EdgeUpdate, FiLMConv, NeuronGNN

__all__ = [
    "EdgeUpdate",
    "FiLMConv",
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

    def predict_pyg(
        self,
        data: Data,
        k: int | None = None,
        *,
        edge_chunk: int | None = None,
        edge_sample_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """:meth:`predict` on a PyG ``Data``, such as ``ParamGraph.to_pyg(edge_attr, lpe)``.

        Reads ``edge_index``, ``edge_type``, ``edge_attr`` and (NiNo only) ``lpe``; the other
        arguments are those of :meth:`predict`. ``ParamGraph.from_pyg(data)`` then maps the
        result back to parameters (``params_from_features``).
        """
        edge_index, edge_type, edge_attr, pe = self._pyg_inputs(data)
        return self.predict(
            edge_index,
            edge_type,
            edge_attr,
            pe,
            k,
            edge_chunk=edge_chunk,
            edge_sample_ratio=edge_sample_ratio,
            generator=generator,
        )

    def forward_pyg(self, data: Data) -> Tensor:
        """:meth:`forward` on a PyG ``Data`` (the fields :meth:`predict_pyg` reads)."""
        return self(*self._pyg_inputs(data))

    def _pyg_inputs(self, data: Data) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        missing = [key for key in ("edge_index", "edge_type", "edge_attr") if key not in data]
        if self.config.gnn and "lpe" not in data:
            missing.append("lpe")
        if missing:
            raise ValueError(
                f"this Data has no {', '.join(missing)}; make it with "
                "ParamGraph.to_pyg(edge_attr=graph_features(...), lpe=graph.lpe(k))"
            )
        return data.edge_index, data.edge_type, data.edge_attr, data.get("lpe")


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
        self.node_proj = MLP([config.lpe, hid])
        self.edge_proj = MLP([config.max_feat_size * config.ctx, hid])
        self.gnn = NeuronGNN(hid, config.layers)
        self.edge_out = MLP([hid, hid, config.max_feat_size * config.seq_len])

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
            x = F.silu(conv.update(mean, x))
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
        self.edge_proj = MLP([config.ctx, hid])
        self.edge_mlp = MLP([hid] * (config.layers + 1) + [config.seq_len])

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
