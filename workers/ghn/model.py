"""The GHN-3 network: node embeddings, a Graphormer-style transformer and the decoders.

The module layout (attribute names and tensor shapes) follows the published GHN-3 checkpoints,
so their state dicts load strictly (``GHN3.load_state_dict``) once a bare official file has been
converted (:mod:`workers.ghn.convert`). The computation follows the published method as
described in ``shared/golden/golden_ghn3.md`` §5.3–5.5; the golden tests check it numerically.

The network reads an architecture graph as three tensors — primitive indices [N], shape
indices [N, 4] (:meth:`ShapeEncoder.indices`) and the dense forward-distance matrix A [N, N]
(``ArchGraph.adjacency()``) — and returns one hidden vector per node (:meth:`GHN3.forward`).
Turning node vectors into parameter tensors of a concrete model is :mod:`workers.ghn.predict`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.ghn.predict import centred, predict_parameters
from workers.graphs.arch.graph import architecture_graph
from workers.graphs.arch.ops import PRIMITIVES

# Structural embedding table sizes of the published model (rows = largest value + 1).
MAX_DEGREE = 100
MAX_INPUT_DIST = 1000
EDGE_ROWS = 257  # distance d is row d + 2; "no edge" (d = 0) is row 2


@dataclass
class GHN3Config:
    """Hyper-parameters of a GHN-3, named as in the published constructor.

    ``max_shape`` is (M0, M1, S, S): the decoder predicts M0 x M1 channel blocks on an S x S
    spatial grid. ``weight_norm``/``ve`` are always True in GHN-3 files and only recorded;
    ``is_ghn2`` (a GatedGNN instead of the transformer) is not implemented here.
    """

    hid: int = 64
    max_shape: tuple[int, int, int, int] = (64, 64, 16, 16)
    num_classes: int = 1000
    heads: int = 8
    layers: int = 3
    is_ghn2: bool = False
    weight_norm: bool = True
    ve: bool = True
    layernorm: bool = True
    pretrained: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for round trips

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GHN3Config:
        """Build from a config dict (golden files, converted checkpoints); unknown keys kept."""
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "max_shape" in kwargs:
            kwargs["max_shape"] = tuple(int(v) for v in kwargs["max_shape"])
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, ints, bools) loadable with ``torch.load(weights_only=True)``."""
        data = asdict(self)
        extra = data.pop("extra")
        data["max_shape"] = list(self.max_shape)
        return data | extra


def infer_config(state_dict: dict[str, Tensor]) -> GHN3Config:
    """Infer the config of a bare official GHN state dict, as the published loader does.

    Official files carry no config; every value follows from key names and tensor shapes.
    """
    keys = list(state_dict)
    num_classes = next(v.shape[0] for k, v in state_dict.items() if "class_layer_predictor" in k)
    hid = next(v.shape[-1] for k, v in state_dict.items() if k.endswith("embed.weight"))
    m = math.isqrt(state_dict["decoder.conv.2.weight"].shape[0])
    spatial = 16 if num_classes >= 1000 else 11
    if "shape_enc.embed_spatial.weight" in state_dict:
        spatial = 11 if state_dict["shape_enc.embed_spatial.weight"].shape[0] == 9 else 16
    return GHN3Config(
        hid=hid,
        max_shape=(m, m, spatial, spatial),
        num_classes=num_classes,
        heads=16 if hid > 64 else 8,
        layers=sum(1 for k in keys if "gnn." in k and k.endswith("ln1.weight")),
        is_ghn2=any("gnn.gru." in k for k in keys),
        weight_norm=True,
        ve=True,
        layernorm=any(k.endswith("ln.weight") for k in keys),
        pretrained=any("centrality_embed_in" in k and "gnn." not in k for k in keys),
    )


# Node-level tables that older official files keep at the top level instead of under gnn.0.
_LEGACY_TOP_LEVEL = ("centrality_embed_in.", "centrality_embed_out.", "input_dist_embed.")


def canonical_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename and reshape official keys into this module's layout (a no-op for ours).

    * the structural embedding tables of older files move from the top level under ``gnn.0.``;
    * 1x1-conv decoder weights stored 4-D (GHN-2 files) are squeezed to Linear weights.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(_LEGACY_TOP_LEVEL):
            key = "gnn.0." + key
        if key.startswith("decoder.conv.") and key.endswith(".weight") and value.dim() == 4:
            value = value.reshape(value.shape[0], value.shape[1])
        out[key] = value
    return out


# --- node features ----------------------------------------------------------------------------


def _nearest(values: list[int], v: int) -> int:
    """Index of the value nearest to ``v`` in sorted ``values``; ties go to the smaller one."""
    hi = bisect.bisect_left(values, v)
    if hi == 0:
        return 0
    if hi == len(values):
        return len(values) - 1
    return hi - 1 if v - values[hi - 1] <= values[hi] - v else hi


def to_4d(shape: tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
    """A tensor shape as the (out, in, h, w) the shape encoder reads.

    1-D and 2-D get trailing ones; a (1, L, C) positional table reads as a C-channel
    sqrt(L) x sqrt(L) map (ViT: (1, 197, 768) -> (1, 768, 14, 14)); other 3-D gets a trailing 1.
    """
    s = [int(v) for v in shape]
    if len(s) == 3 and s[0] == 1 and s[1] > 1 and s[2] > 1:
        side = math.isqrt(s[1])
        return (1, s[2], side, side)
    s = (s + [1, 1, 1, 1])[:4]
    return (s[0], s[1], s[2], s[3])


class ShapeEncoder(nn.Module):
    """Embeds a 4-D shape as four lookups (out-ch, in-ch, h, w), each ``hid / 4`` wide.

    Channel counts and spatial sizes are first snapped to fixed value tables (see
    :meth:`channel_index`, :meth:`spatial_index`); the extra last row of each table is the
    "no shape" embedding used by op nodes.
    """

    def __init__(self, hid: int, num_classes: int, spatial: int) -> None:
        super().__init__()
        channels = (
            {1, 3, num_classes}
            | set(range(8, 64, 8))
            | set(range(64, 4096, 16))
            | set(range(4096, 8192 + 1, 32))
        )
        self.channel_values = sorted(channels)
        odd = range(1, max(12, spatial), 2)
        self.spatial_values = sorted(set(odd) | {14, 16})
        self.embed_spatial = nn.Embedding(len(self.spatial_values) + 1, hid // 4)
        self.embed_channel = nn.Embedding(len(self.channel_values) + 1, hid // 4)

    def channel_index(self, c: int) -> int:
        """Row of channel count ``c``: exact, 4..7 -> 8, nearest (ties down), else the last."""
        values = self.channel_values
        if 4 <= c <= 7:
            return values.index(8)
        if 1 <= c <= values[-1]:
            return _nearest(values, c)
        return len(values) - 1

    def spatial_index(self, s: int) -> int:
        """Row of spatial size ``s``: exact, 2 -> 3, nearest (ties down), else the last."""
        values = self.spatial_values
        if s == 2:
            return values.index(3)
        if 1 <= s <= values[-1]:
            return _nearest(values, s)
        return len(values) - 1

    def indices(self, shape: tuple[int, ...] | list[int] | None) -> list[int]:
        """The four embedding rows of a shape; ``None`` gives the reserved "no shape" rows."""
        if shape is None:
            nc, ns = len(self.channel_values), len(self.spatial_values)
            return [nc, nc, ns, ns]
        o, i, h, w = to_4d(shape)
        return [
            self.channel_index(o),
            self.channel_index(i),
            self.spatial_index(h),
            self.spatial_index(w),
        ]

    def forward(self, shape_ind: Tensor) -> Tensor:
        """[N, 4] long indices -> [N, hid] embeddings (concatenated in out, in, h, w order)."""
        return torch.cat(
            [
                self.embed_channel(shape_ind[:, 0]),
                self.embed_channel(shape_ind[:, 1]),
                self.embed_spatial(shape_ind[:, 2]),
                self.embed_spatial(shape_ind[:, 3]),
            ],
            dim=1,
        )


# --- transformer ------------------------------------------------------------------------------


class EdgeEmbedding(nn.Module):
    """Table of shortest-path distance embeddings (its own module for the published key)."""

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(EDGE_ROWS, hid)


class GraphAttention(nn.Module):
    """Multi-head self-attention over all nodes with an additive per-head bias.

    Layer 0 also owns the edge embedding and the MLP that maps (forward, backward) distance
    embeddings to the per-head bias (:meth:`edge_bias`), which every layer then reuses.
    """

    def __init__(self, hid: int, heads: int, first: bool) -> None:
        super().__init__()
        if hid % heads:
            raise ValueError(f"hid={hid} is not divisible by heads={heads}")
        self.heads = heads
        self.to_qkv = nn.Linear(hid, 3 * hid, bias=False)
        # Index 1 is a (no-op) dropout in the published layout; Identity keeps the key "to_out.0".
        self.to_out = nn.Sequential(nn.Linear(hid, hid), nn.Identity())
        if first:
            self.edge_embed = EdgeEmbedding(hid)
            self.proj_e = nn.Sequential(nn.Linear(2 * hid, hid), nn.ReLU(), nn.Linear(hid, heads))

    def edge_bias(self, adjacency: Tensor) -> Tensor:
        """Per-head attention bias [H, N, N] from forward distances A [N, N] (0 = no path).

        The bias of query i and key j depends only on the pair (A[i, j], A[j, i]), so the MLP
        runs once per distinct pair rather than N^2 times; results are the same per pair.
        """
        a = adjacency.clamp(0, EDGE_ROWS - 3).long()
        codes = a * EDGE_ROWS + a.T
        unique, inverse = torch.unique(codes, return_inverse=True)
        table = self.edge_embed.embed.weight
        feats = torch.cat([table[unique // EDGE_ROWS + 2], table[unique % EDGE_ROWS + 2]], dim=1)
        bias = self.proj_e(feats)  # [U, H]
        return bias[inverse].permute(2, 0, 1)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """x [N, hid], bias [H, N, N] -> [N, hid] (before the residual)."""
        n, hid = x.shape
        d = hid // self.heads
        q, k, v = self.to_qkv(x).chunk(3, dim=1)
        # head-major split: head j is columns j*d .. (j+1)*d - 1 of each third
        q, k, v = (t.reshape(n, self.heads, d).transpose(0, 1) for t in (q, k, v))
        logits = q @ k.transpose(1, 2) * d**-0.5 + bias
        out = logits.softmax(dim=-1) @ v  # [H, N, d]
        return self.to_out(out.transpose(0, 1).reshape(n, hid))


class FeedForward(nn.Module):
    """Linear(h, 4h) -> GELU (erf) -> Linear(4h, h); indices match the published keys."""

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hid, 4 * hid), nn.GELU(), nn.Identity(), nn.Linear(4 * hid, hid)
        )

    def forward(self, x: Tensor) -> Tensor:
        """[N, hid] -> [N, hid]."""
        return self.net(x)


class GraphormerLayer(nn.Module):
    """Pre-LayerNorm transformer layer; the first also adds degree and input-distance tables."""

    def __init__(self, hid: int, heads: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.ln1 = nn.LayerNorm(hid)
        self.attn = GraphAttention(hid, heads, first)
        self.ln2 = nn.LayerNorm(hid)
        self.ff = FeedForward(hid)
        if first:
            self.centrality_embed_in = nn.Embedding(MAX_DEGREE + 1, hid)
            self.centrality_embed_out = nn.Embedding(MAX_DEGREE + 1, hid)
            self.input_dist_embed = nn.Embedding(MAX_INPUT_DIST + 1, hid)

    def structural(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """Add in/out-degree (real edges only) and distance-from-node-0 embeddings."""
        edges = adjacency == 1
        in_deg = edges.sum(0).clamp(0, MAX_DEGREE)
        out_deg = edges.sum(1).clamp(0, MAX_DEGREE)
        dist = adjacency[0].clamp(0, MAX_INPUT_DIST).long()
        return (
            x
            + self.centrality_embed_in(in_deg)
            + self.centrality_embed_out(out_deg)
            + self.input_dist_embed(dist)
        )

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """x [N, hid] (structural embeddings already added for layer 0) -> [N, hid]."""
        x = x + self.attn(self.ln1(x), bias)
        return x + self.ff(self.ln2(x))


# --- decoders ---------------------------------------------------------------------------------


class ConvDecoder(nn.Module):
    """Node vector -> (M0, M1, kh, kw) block, plus the classifier head.

    ``fc`` maps a node to a (4h, S, S) feature map; ``conv`` is a per-position MLP to M0*M1
    channels; ``class_layer_predictor`` maps the M0 output rows to ``num_classes`` rows.
    """

    def __init__(self, hid: int, max_shape: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        self.hid = hid
        self.m0, self.m1, self.spatial = max_shape[0], max_shape[1], max_shape[2]
        self.fc = nn.Sequential(nn.Linear(hid, 4 * hid * self.spatial**2), nn.ReLU())
        self.conv = nn.Sequential(
            nn.Linear(4 * hid, 8 * hid), nn.ReLU(), nn.Linear(8 * hid, self.m0 * self.m1)
        )
        self.class_layer_predictor = nn.Sequential(nn.ReLU(), nn.Linear(self.m0, num_classes))

    def forward(self, x: Tensor, out_ch: int, in_ch: int, kernel: tuple[int, int]) -> Tensor:
        """x [B, hid] -> [B, min(out_ch, M0), min(in_ch, M1), kh', kw'].

        The centred min(k, S) window of the S x S map is decoded; kernels larger than S in
        both dimensions are then resized bilinearly to (kh, kw).
        """
        kh, kw = kernel
        s = self.spatial
        z = self.fc(x).reshape(len(x), 4 * self.hid, s, s)
        z = z[:, :, centred(s, kh), centred(s, kw)]
        y = self.conv(z.permute(0, 2, 3, 1))  # [B, h', w', M0*M1]
        b, h, w, _ = y.shape
        y = y.reshape(b, h, w, self.m0, self.m1).permute(0, 3, 4, 1, 2)[:, :, :in_ch]
        if min(kh, kw) > min(h, w):
            y = torch.stack(
                [F.interpolate(t, size=(kh, kw), mode="bilinear", align_corners=False) for t in y]
            )
        return y[:, :out_ch]

    def classifier(self, x: Tensor, in_ch: int) -> Tensor:
        """x [B, hid] -> classifier weights [B, num_classes, min(in_ch, M1)]."""
        w = self.forward(x, self.m0, in_ch, (1, 1))[:, :, :, 0, 0]  # [B, M0, i]
        return self.class_layer_predictor(w.transpose(1, 2)).transpose(1, 2)


class VectorDecoder(nn.Module):
    """Node vector -> (2, m): row 0 predicts a 1-D weight, row 1 a 1-D bias."""

    def __init__(self, hid: int, m: int) -> None:
        super().__init__()
        self.m = m
        self.fc = nn.Sequential(nn.Linear(hid, 2 * hid), nn.ReLU(), nn.Linear(2 * hid, 2 * m))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, hid] -> [B, 2, m]."""
        return self.fc(x).reshape(len(x), 2, self.m)


# --- the network ------------------------------------------------------------------------------


class GHN3(nn.Module):
    """GHN-3: graph in, one hidden vector per node out; decoders turn vectors into tensors.

    ``forward`` runs the embeddings and the transformer; ``decode_conv``,
    ``decode_classifier`` and ``decode_vector`` are the heads :mod:`workers.ghn.predict` uses.
    """

    def __init__(self, config: GHN3Config | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = GHN3Config.from_dict(config)
        if config.is_ghn2:
            raise NotImplementedError("GHN-2 (GatedGNN) checkpoints are not supported yet")
        self.config = config
        hid, shape = config.hid, config.max_shape
        self.max_shape = shape
        self.ln = nn.LayerNorm(hid) if config.layernorm else nn.Identity()
        self.embed = nn.Embedding(len(PRIMITIVES), hid)
        self.shape_enc = ShapeEncoder(hid, config.num_classes, shape[2])
        self.gnn = nn.ModuleList(
            GraphormerLayer(hid, config.heads, first=i == 0) for i in range(config.layers)
        )
        self.decoder = ConvDecoder(hid, shape, config.num_classes)
        m = max(shape[0], shape[1])
        self.decoder_1d = VectorDecoder(hid, m)
        self.bias_class = nn.Sequential(nn.ReLU(), nn.Linear(m, config.num_classes))

    def forward(
        self,
        primitive_idx: Tensor,
        shape_ind: Tensor,
        adjacency: Tensor,
        record: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Node features [N, hid] of a graph.

        ``primitive_idx`` [N] and ``shape_ind`` [N, 4] are long tensors; ``adjacency`` is the
        dense forward-distance matrix A [N, N] (A[i, j] = d for a shortest path i -> j of
        length d, 0 for none), with node 0 the input node. When ``record`` is a dict it
        receives the intermediates under the golden names (``x_shape_enc``,
        ``x_after_struct_embed``, ``x_gnn_layer{l}``, ``edge_bias`` [N, N, H], ``x_final``).
        """
        dev = self.embed.weight.device
        primitive_idx, shape_ind = primitive_idx.to(dev), shape_ind.to(dev)
        adjacency = adjacency.to(dev)
        x = self.embed(primitive_idx) + self.shape_enc(shape_ind)
        first = self.gnn[0]
        if record is not None:
            record["x_shape_enc"] = x
        x = first.structural(x, adjacency)
        bias = first.attn.edge_bias(adjacency)
        if record is not None:
            record["x_after_struct_embed"] = x
            record["edge_bias"] = bias.permute(1, 2, 0)
        for i, layer in enumerate(self.gnn):
            x = layer(x, bias)
            if record is not None:
                record[f"x_gnn_layer{i}"] = x
        x = self.ln(x)
        if record is not None:
            record["x_final"] = x
        return x

    def decode_conv(self, x: Tensor, out_ch: int, in_ch: int, kernel: tuple[int, int]) -> Tensor:
        """Weights [B, o, i, kh, kw] for node vectors x [B, hid] (see ``ConvDecoder``)."""
        return self.decoder(x, out_ch, in_ch, kernel)

    def decode_classifier(self, x: Tensor, in_ch: int) -> Tensor:
        """Classifier weights [B, num_classes, i] for node vectors x [B, hid]."""
        return self.decoder.classifier(x, in_ch)

    def decode_vector(self, x: Tensor, classifier_bias: bool = False) -> Tensor:
        """[B, 2, m] (row 0 weight, row 1 bias); [B, 2, num_classes] for the classifier bias."""
        u = self.decoder_1d(x)
        return self.bias_class(u) if classifier_bias else u

    def predict(
        self,
        model: nn.Module,
        example: Tensor | None = None,
        *,
        skip_classifier: bool = False,
    ) -> tuple[nn.Module, Any]:
        """``model`` with its parameters predicted (in place, no gradient) and the report.

        ``example`` is an input batch for tracing the graph (default: an ImageNet-sized
        image); pass e.g. ``torch.zeros(1, 1, 28, 28)`` for a Fashion-MNIST model. The
        report (:class:`workers.ghn.predict.PredictionReport`) lists what was not predicted
        and why. Typical use::

            ghn = load_ghn("workers/ghn/weights/ghn_ours.pt")
            model, report = ghn.predict(torchvision.models.resnet18(num_classes=10))
        """
        was_training = self.training
        self.eval()
        try:
            graph = architecture_graph(model, example)
            report = predict_parameters(self, model, graph, skip_classifier=skip_classifier)
        finally:
            self.train(was_training)
        return model, report

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> GHN3:
        """Build from ``{"state_dict", "config"}`` (config optional) and load it strictly."""
        state = canonical_state_dict(checkpoint["state_dict"])
        config = checkpoint.get("config")
        ghn = cls(infer_config(state) if config is None else config)
        ghn.load_state_dict(state, strict=True)
        return ghn


def load_ghn(path: str, map_location: str | torch.device = "cpu") -> GHN3:
    """Load a converted GHN file (``{"state_dict", "config"}``) safely (weights only)."""
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or "state_dict" not in data:
        raise ValueError(
            "not a converted GHN file (expected a dict with 'state_dict'); convert official "
            "files with workers.ghn.convert first"
        )
    return GHN3.from_checkpoint(data)
