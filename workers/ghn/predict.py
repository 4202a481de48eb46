"""Predict a model's parameters with a GHN-3 and write them into the model.

Pipeline (``shared/golden/golden_ghn3.md`` §5.3–5.8, checked numerically by the golden tests):

1. the architecture graph (``workers.graphs.arch.graph``) gives node types, the distance matrix
   and which parameters each node stands for; shapes are the model's true parameter shapes;
2. the GHN turns the graph into one vector per node (:class:`workers.ghn.model.GHN3`);
3. parameter nodes are grouped by a decoder key (:func:`decoder_key`) and decoded together;
4. each decoded block is sliced and periodically tiled to the target shape (:func:`fit_shape`),
   normalised by tensor type (:func:`normalise`) and copied into the parameter in place.

Parameters no graph node stands for (ConvNeXt ``layer_scale``, ViT ``class_token``, unused
parameters) are left untouched and reported with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.graphs.arch.graph import ArchGraph, ArchNode, architecture_graph

if TYPE_CHECKING:  # the network is only passed in: importing it here would be a cycle
    from workers.ghn.model import GHN3


def centred(size: int, k: int) -> slice:
    """The centred window of length min(k, size) used for kernels: c-k//2 .. c+ceil(k/2)."""
    c = size // 2
    return slice(max(0, c - k // 2), min(size, c + (k + 1) // 2))

# A decoder key: (o, i, kh, kw) for conv-like tensors, (o, i) for the classifier weight,
# (o, 0) for 1-D tensors and (o, -1) for the classifier bias.
Key = tuple[int, ...]

_POOLS = {"max_pool", "avg_pool"}
POS_STD = 0.02  # std of the freshly drawn class-token row of a ViT positional table


@dataclass
class PredictionReport:
    """What ``predict_parameters`` did.

    ``predicted`` lists the parameters written, in graph order; ``not_predicted`` maps every
    other parameter of the model to the reason it was left as it was. ``decoder_keys`` gives
    the key each parameter node was decoded with and ``groups`` the decoding groups in
    processing order (node indices). ``notes`` holds anything approximate worth knowing.
    """

    predicted: list[str] = field(default_factory=list)
    not_predicted: dict[str, str] = field(default_factory=dict)
    decoder_keys: dict[int, Key] = field(default_factory=dict)
    groups: list[tuple[Key, list[int]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_params_total: int = 0
    n_params_predicted: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (no per-node keys)."""
        return {
            "predicted": list(self.predicted),
            "not_predicted": dict(self.not_predicted),
            "notes": list(self.notes),
            "n_params_total": self.n_params_total,
            "n_params_predicted": self.n_params_predicted,
        }


# --- shapes and keys --------------------------------------------------------------------------


def _pool_kernel(model: nn.Module, node: ArchNode) -> tuple[int, int] | None:
    """Kernel size of a pool node, read from the pooling module it belongs to (if any)."""
    try:
        module = model.get_submodule(node.module) if node.module else model
    except AttributeError:
        return None
    k = getattr(module, "kernel_size", None)
    if isinstance(k, int):
        return (k, k)
    if isinstance(k, tuple | list) and len(k) == 2:
        return (int(k[0]), int(k[1]))
    return None


def node_shapes(
    model: nn.Module, graph: ArchGraph, notes: list[str] | None = None
) -> list[tuple[int, ...] | None]:
    """The shape each node shows the shape encoder, or None for the "no shape" embedding.

    Parameter nodes use the model's parameter (the full module tensor); pool nodes use
    (1, 1, kh, kw) from their pooling module; every other node has no shape.
    """
    params = dict(model.named_parameters())
    shapes: list[tuple[int, ...] | None] = []
    for node in graph.nodes:
        if node.params:
            name, shape = node.params[0]
            shapes.append(tuple(params[name].shape) if name in params else tuple(shape))
        elif node.primitive in _POOLS:
            kernel = _pool_kernel(model, node)
            if kernel is None and notes is not None:
                notes.append(f"{node.name}: pool kernel size unknown, no shape embedding used")
            shapes.append(None if kernel is None else (1, 1, *kernel))
        else:
            shapes.append(None)
    return shapes


def _fit_channel(size: int, limit: int) -> int:
    """Channel count of a decoder key: min(size, limit), 3k -> 4k, then >= limit/2 -> limit."""
    c = min(size, limit)
    if c % 3 == 0:
        c = c // 3 * 4
    return limit if c >= limit / 2 else c


def decoder_key(
    shape: tuple[int, ...],
    max_shape: tuple[int, ...],
    *,
    last_weight: bool = False,
    last_bias: bool = False,
) -> Key:
    """The key a tensor of ``shape`` is decoded with; equal keys are decoded together.

    The key also fixes what is decoded: (o, i, kh, kw) for conv-like tensors (2-D ones as
    1 x 1, a (1, L, C) positional table as a C-channel sqrt(L) x sqrt(L) map), (o, i) for the
    classifier weight, (o, 0) for 1-D tensors and (o, -1) for the classifier bias.
    """
    m0, m1 = max_shape[0], max_shape[1]
    if len(shape) == 1:
        return (_fit_channel(shape[0], m0), -1 if last_bias else 0)
    o, i = _fit_channel(shape[0], m0), _fit_channel(shape[1], m1)
    if last_weight:
        return (o, i)
    if len(shape) == 2:
        return (o, i, 1, 1)
    if len(shape) == 3:
        if shape[0] == 1 and shape[1] > 1 and shape[2] > 1:
            side = math.isqrt(shape[1])
            return (1, shape[2], side, side)
        return (o, i, _fit_channel(shape[2], max_shape[2]))
    return (o, i, shape[2], shape[3])


# --- slicing, tiling and normalisation --------------------------------------------------------


def _tile(p: Tensor, dim: int, size: int) -> Tensor:
    """Periodic repetition along ``dim`` up to ``size`` (entry r is entry r mod n)."""
    n = p.shape[dim]
    if n >= size:
        return p
    reps = [1] * p.dim()
    reps[dim] = -(-size // n)
    return p.repeat(*reps).narrow(dim, 0, size)


def fit_shape(pred: Tensor, target: tuple[int, ...]) -> Tensor:
    """Slice a decoded block to ``target`` and tile it periodically where it is too small.

    Channels are taken from the start, spatial windows from the centre. A (1, c, s, s)
    block for a (1, L, C) positional table is read row-major as (1, s*s, c); when L = s*s + 1
    a class-token row drawn from N(0, 0.02^2) (global RNG) is put first.
    """
    t = tuple(int(v) for v in target)
    if len(t) == 1:
        if pred.dim() == 4:  # centre pixel of the first input channel
            pred = pred[:, 0, pred.shape[2] // 2, pred.shape[3] // 2]
        p = pred[: t[0]]
        return _tile(p, 0, t[0])
    if len(t) == 2:
        p = pred[: t[0], : t[1]]
        if p.dim() == 4:
            p = p[:, :, p.shape[2] // 2, p.shape[3] // 2]
        return _tile(_tile(p, 0, t[0]), 1, t[1])
    if len(t) == 3:
        if pred.dim() == 4 and pred.shape[0] == 1 and t[0] == 1:  # positional table
            c, s = pred.shape[1], pred.shape[2]
            p = pred.reshape(1, c, s * pred.shape[3]).transpose(1, 2)[:, : t[1], : t[2]]
            if t[1] == p.shape[1] + 1:
                cls = torch.randn(1, 1, p.shape[2], device=p.device, dtype=p.dtype) * POS_STD
                p = torch.cat([cls, p], dim=1)
            return _tile(p, 2, t[2])[:, : t[1]]
        p = pred[..., 0] if pred.dim() == 4 else pred
        p = p[: t[0], : t[1], centred(p.shape[2], t[2])]
        p = _tile(_tile(p, 0, t[0]), 1, t[1])
        return _resize_spatial(p[..., None], (t[2], 1))[..., 0]
    p = pred if pred.dim() == 4 else pred.reshape(*pred.shape[:2], 1, 1)
    p = p[: t[0], : t[1], centred(p.shape[2], t[2]), centred(p.shape[3], t[3])]
    p = _tile(_tile(p, 0, t[0]), 1, t[1])
    return _resize_spatial(p, (t[2], t[3]))


def _resize_spatial(p: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a 4-D block whose kernel is still smaller than the target.

    The decoder already resizes kernels larger than S in both dimensions; this covers the
    rest (say a 1 x 21 kernel), which the published code does not handle, instead of failing.
    """
    if tuple(p.shape[2:]) == size:
        return p
    return F.interpolate(p, size=size, mode="bilinear", align_corners=False)


def normalise(p: Tensor, is_bias: bool) -> Tensor:
    """Scale a full-size predicted tensor by type (GHN weight normalisation).

    Weights of 2+ dims get sqrt(beta / fan_in), beta = 1 for depthwise-like kernels and 2
    otherwise; large positional tables (1, L, C>=11) are left as they are. 1-D weights map to
    (0, 2) by 2*sigmoid(p/2), biases to (-1, 1) by tanh(p/5).
    """
    sz = p.shape
    if p.dim() == 1:
        return torch.tanh(p / 5) if is_bias else 2 * torch.sigmoid(p / 2)
    if p.dim() >= 3 and sz[2] >= 11 and sz[0] == 1:
        return p
    fan_in = math.prod(sz[1:])
    depthwise = p.dim() > 2 and (sz[1] == 1 or (p.dim() > 3 and sz[2] < sz[3]))
    beta = 1.0 if depthwise else 2.0
    return p * math.sqrt(beta / fan_in)


def _is_bias(name: str) -> bool:
    return "bias" in name.rsplit(".", 1)[-1]


# --- prediction -------------------------------------------------------------------------------


def _decode_group(ghn: GHN3, key: Key, x: Tensor) -> Tensor:
    """Decode node vectors x [B, hid] sharing ``key``: [B, ...] raw blocks."""
    if len(key) == 2 and key[1] in (0, -1):
        return ghn.decode_vector(x, classifier_bias=key[1] == -1)
    if len(key) == 2:
        return ghn.decode_classifier(x, key[1])
    if len(key) == 3:  # Conv1d-like (o, i, k): a k x 1 kernel
        return ghn.decode_conv(x, key[0], key[1], (key[2], 1))
    return ghn.decode_conv(x, key[0], key[1], (key[2], key[3]))


def predict_tensors(
    ghn: GHN3,
    model: nn.Module,
    graph: ArchGraph | None = None,
    *,
    record: dict[str, Any] | None = None,
    shape_ind: Tensor | None = None,
    skip_classifier: bool = False,
) -> tuple[dict[str, Tensor], PredictionReport]:
    """The GHN's prediction for ``model``'s parameters, as a dict of new tensors.

    Nothing is written into the model, and gradients flow back into the GHN, which is how
    meta-training uses it (``torch.func.functional_call(model, tensors, x)``).
    ``graph`` defaults to ``architecture_graph(model)`` (one forward pass on random input,
    which draws from the global RNG); ``shape_ind`` may be passed to skip recomputing the
    shape embedding rows of a graph seen before. ``skip_classifier`` leaves the classifier
    (the graph's last weight and bias) out, for a model whose head is trained on another task.
    When ``record`` is a dict it receives the GHN intermediates (see ``GHN3.forward``) and
    ``raw[node]``, the raw decoder output of each parameter node.
    """
    if graph is None:
        graph = architecture_graph(model)
    report = PredictionReport()
    if graph.unknown_ops:
        report.notes.append(f"ops unknown to the graph builder were folded: {graph.unknown_ops}")
    params = dict(model.named_parameters())
    report.n_params_total = sum(p.numel() for p in params.values())

    shapes = node_shapes(model, graph, report.notes)
    if shape_ind is None:
        shape_ind = torch.tensor([ghn.shape_enc.indices(s) for s in shapes], dtype=torch.long)
    x = ghn(graph.primitive_idx(), shape_ind, graph.adjacency(), record)

    # The published models find the classifier by position: the last two nodes.
    n = graph.n_nodes
    groups: dict[Key, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        if not node.params or node.params[0][0] not in params:
            continue
        shape = shapes[i]
        assert shape is not None
        last_weight = i == n - 2 and ".weight" in node.name
        last_bias = i == n - 1 and ".bias" in node.name
        if skip_classifier and (last_weight or last_bias):
            for name, _ in node.params:
                report.not_predicted[name] = "the classifier, skipped on request"
            continue
        key = decoder_key(shape, ghn.max_shape, last_weight=last_weight, last_bias=last_bias)
        report.decoder_keys[i] = key
        groups.setdefault(key, []).append(i)
    report.groups = list(groups.items())

    tensors: dict[str, Tensor] = {}
    for key, nodes in report.groups:
        raw = _decode_group(ghn, key, x[nodes])
        for b, i in enumerate(nodes):
            if record is not None:
                record.setdefault("raw", {})[i] = raw[b]
            for j, (name, _) in enumerate(graph.nodes[i].params):
                param = params.get(name)
                if param is None:
                    continue
                if raw[b].dim() == 2 and len(key) == 2 and key[1] in (0, -1):
                    # 1-D decoder: row 0 is the weight, row 1 the bias
                    pred = raw[b][1 if _is_bias(name) else 0]
                elif j > 0:
                    report.not_predicted[name] = "extra tensor of a multi-dim node, not decoded"
                    continue
                else:
                    pred = raw[b]
                value = normalise(fit_shape(pred, tuple(param.shape)), _is_bias(name))
                tensors[name] = value.to(param.dtype)
                report.predicted.append(name)

    covered_reason = "no graph node stands for it (its module type is not supported by the GHN)"
    for name in params:
        if name not in tensors and name not in report.not_predicted:
            report.not_predicted[name] = covered_reason
    report.n_params_predicted = sum(params[name].numel() for name in tensors)
    return tensors, report


@torch.no_grad()
def predict_parameters(
    ghn: GHN3,
    model: nn.Module,
    graph: ArchGraph | None = None,
    *,
    record: dict[str, Any] | None = None,
    skip_classifier: bool = False,
) -> PredictionReport:
    """Predict ``model``'s parameters with ``ghn`` and copy them into the model in place.

    Parameter objects, buffers (BatchNorm running stats) and the train/eval mode are kept;
    only parameter values change. See :func:`predict_tensors` for ``graph``, ``record`` and
    ``skip_classifier``; :meth:`GHN3.predict` is the one-call version.
    """
    tensors, report = predict_tensors(
        ghn, model, graph, record=record, skip_classifier=skip_classifier
    )
    params = dict(model.named_parameters())
    for name, value in tensors.items():
        params[name].copy_(value)
    return report
