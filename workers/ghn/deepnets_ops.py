"""The operations and the cell of DeepNets-1M-style networks (see :mod:`workers.ghn.deepnets`).

Every operation is made from standard layers (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``,
pooling, elementwise glue) so that :func:`workers.graphs.arch.graph.architecture_graph` types
each of them as a GHN primitive: separable convolutions become ``sep_conv`` nodes, dilated ones
``dil_conv``, self-attention is an explicit softmax (``msa``) and squeeze-excitation a multiply
by a sigmoid gate (``cse``).

All operations map ``C`` channels to ``C`` channels. With ``stride == 2`` (edges of a reduction
cell that read the cell inputs) every one of them halves the resolution rounding up, so odd
sizes (7 x 7 on Fashion-MNIST after two reductions) work everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The DeepNets-1M operation space, in a fixed order (sampling draws from this order).
OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "conv_1x1",
    "conv_7x1_1x7",
    "conv_3x3",
    "conv_5x5",
    "conv_7x7",
    "msa",
    "cse",
)

# An edge of a cell: (operation name, index of the state it reads). States 0 and 1 are the two
# cell inputs (outputs of the cell two back and of the previous cell), state k + 2 is node k.
Edge = tuple[str, int]


def norm(channels: int, batch_norm: bool) -> nn.Module:
    """``BatchNorm2d(channels)`` (affine, so a GHN predicts it) or an identity when BN is off."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _subsample(x: Tensor, stride: int) -> Tensor:
    """Every ``stride``-th pixel: the resolution a stride-``stride`` 3x3 conv (padding 1) gives."""
    return x if stride == 1 else x[:, :, ::stride, ::stride]


class ReLUConvBN(nn.Sequential):
    """ReLU -> one or more convolutions -> BN (the DARTS building block)."""

    def __init__(self, convs: Sequence[nn.Conv2d], out_channels: int, batch_norm: bool) -> None:
        super().__init__(nn.ReLU(), *convs, norm(out_channels, batch_norm))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool) -> ReLUConvBN:
    """ReLU -> k x k convolution ("same" padding) -> BN."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return ReLUConvBN([conv], c_out, batch_norm)


def conv_7x1_1x7(channels: int, stride: int, batch_norm: bool) -> ReLUConvBN:
    """ReLU -> 1x7 conv -> 7x1 conv -> BN (the factorised 7x7 of DARTS)."""
    convs = [
        nn.Conv2d(channels, channels, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(channels, channels, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
    ]
    return ReLUConvBN(convs, channels, batch_norm)


def dil_conv(channels: int, kernel: int, stride: int, batch_norm: bool) -> ReLUConvBN:
    """ReLU -> depthwise k x k conv with dilation 2 -> pointwise conv -> BN."""
    pad = kernel - 1  # dilation 2: the receptive field is 2k - 1
    depthwise = nn.Conv2d(
        channels, channels, kernel, stride, pad, dilation=2, groups=channels, bias=False
    )
    pointwise = nn.Conv2d(channels, channels, 1, bias=False)
    return ReLUConvBN([depthwise, pointwise], channels, batch_norm)


def sep_conv(channels: int, kernel: int, stride: int, batch_norm: bool) -> nn.Sequential:
    """Two stacked (ReLU -> depthwise k x k -> pointwise -> BN) blocks; only the first strides."""

    def block(s: int) -> ReLUConvBN:
        depthwise = nn.Conv2d(
            channels, channels, kernel, s, kernel // 2, groups=channels, bias=False
        )
        pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        return ReLUConvBN([depthwise, pointwise], channels, batch_norm)

    return nn.Sequential(block(stride), block(1))


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two stride-2 1x1 convs on shifted grids.

    The second grid starts one pixel down and right; the input is zero-padded by one pixel at
    the bottom/right first, so both halves have ceil(size / 2) pixels for odd sizes too.
    """

    def __init__(self, c_in: int, c_out: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.norm = norm(c_out, batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.norm(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with an explicit softmax.

    Pixels are tokens; ``qkv`` and ``proj`` are ``nn.Linear`` layers (with biases, as in
    ``nn.MultiheadAttention``), followed by BN. A stride of 2 subsamples the map first.
    """

    def __init__(self, channels: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        self.n_heads = attention_heads(channels)
        self.stride = stride
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm = norm(channels, batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        x = _subsample(x, self.stride)
        b, c, h, w = x.shape
        heads, d = self.n_heads, c // self.n_heads
        tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
        # An explicit softmax (not the fused SDPA kernel) so the graph gets an ``msa`` node.
        attn = torch.softmax((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d)), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, h * w, c)
        out = self.proj(out).transpose(1, 2).reshape(b, c, h, w)
        return self.norm(out)


def attention_heads(channels: int) -> int:
    """Heads of a :class:`SelfAttention` on ``channels``: 4 when it divides them, else 2 or 1."""
    return next(h for h in (4, 2, 1) if channels % h == 0)


class SqueezeExcite(nn.Module):
    """Channel squeeze-excitation: x * sigmoid(fc2(relu(fc1(mean(x))))), fcs as 1x1 convs.

    The hidden width is max(8, C // 4). A stride of 2 subsamples the map first.
    """

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        hidden = max(8, channels // 4)
        self.stride = stride
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = _subsample(x, self.stride)
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(gate))))
        return x * gate


def make_op(name: str, channels: int, stride: int, batch_norm: bool) -> nn.Module | None:
    """The module of operation ``name`` on ``channels`` channels; None for ``"none"``.

    ``stride`` is 1, or 2 on the edges of a reduction cell that read a cell input.
    """
    c, s, bn = channels, stride, batch_norm
    if name == "none":
        return None
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=s, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if s == 1 else FactorizedReduce(c, c, bn)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return sep_conv(c, int(name[-1]), s, bn)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return dil_conv(c, int(name[-1]), s, bn)
    if name in ("conv_1x1", "conv_3x3", "conv_5x5", "conv_7x7"):
        return conv_bn(c, c, int(name[-1]), s, bn)
    if name == "conv_7x1_1x7":
        return conv_7x1_1x7(c, s, bn)
    if name == "msa":
        return SelfAttention(c, s, bn)
    if name == "cse":
        return SqueezeExcite(c, s)
    raise ValueError(f"unknown operation {name!r}; expected one of {OPS}")


def op_param_count(name: str, channels: int, stride: int, batch_norm: bool) -> int:
    """Parameters of ``make_op(name, channels, stride, batch_norm)``, without building it.

    Sampling rejects networks by size many times per accepted one, so sizes are computed
    from these formulas; the tests check them against the built modules.
    """
    c = channels
    bn = 2 * c if batch_norm else 0
    if name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0
    if name == "skip_connect":
        return 0 if stride == 1 else c * c + bn
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return 2 * (c * int(name[-1]) ** 2 + c * c + bn)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return c * int(name[-1]) ** 2 + c * c + bn
    if name in ("conv_1x1", "conv_3x3", "conv_5x5", "conv_7x7"):
        return c * c * int(name[-1]) ** 2 + bn
    if name == "conv_7x1_1x7":
        return 14 * c * c + bn
    if name == "msa":
        return 4 * c * c + 4 * c + bn
    if name == "cse":
        hidden = max(8, c // 4)
        return 2 * c * hidden + hidden + c
    raise ValueError(f"unknown operation {name!r}; expected one of {OPS}")


def cell_param_count(
    nodes: Sequence[Sequence[Edge]],
    c_prev_prev: int,
    c_prev: int,
    channels: int,
    *,
    reduction: bool,
    reduction_prev: bool,
    batch_norm: bool,
) -> int:
    """Parameters of the :class:`Cell` with these arguments, without building it."""
    bn = 2 * channels if batch_norm else 0
    edges = [(op, inp) for node in nodes for op, inp in node if op != "none"]
    used = {inp for _, inp in edges}
    total = 0
    if 0 in used:  # FactorizedReduce and a 1x1 conv have the same size
        total += c_prev_prev * channels + bn
    if 1 in used:
        total += c_prev * channels + bn
    for op, inp in edges:
        stride = 2 if reduction and inp < 2 else 1
        total += op_param_count(op, channels, stride, batch_norm)
    return total


class Cell(nn.Module):
    """A DARTS-style cell: nodes that sum operations on earlier states, outputs concatenated.

    ``nodes[k]`` lists the (operation, input state) edges of node k (``"none"`` edges are
    dropped); the output concatenates the states in ``concat``. Inputs are preprocessed to
    ``channels`` channels by a 1x1 ReLU-conv-BN (a :class:`FactorizedReduce` for the older
    input when the previous cell reduced); a preprocessing nobody reads is not built, so every
    parameter is used. In a reduction cell the edges reading the inputs have stride 2.
    """

    def __init__(
        self,
        nodes: Sequence[Sequence[Edge]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        *,
        reduction: bool,
        reduction_prev: bool,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        edges = [(k, op, inp) for k, node in enumerate(nodes) for op, inp in node if op != "none"]
        used = {inp for _, _, inp in edges}
        self.pre0: nn.Module | None = None
        self.pre1: nn.Module | None = None
        if 0 in used:
            self.pre0 = (
                FactorizedReduce(c_prev_prev, channels, batch_norm)
                if reduction_prev
                else conv_bn(c_prev_prev, channels, 1, 1, batch_norm)
            )
        if 1 in used:
            self.pre1 = conv_bn(c_prev, channels, 1, 1, batch_norm)
        self.n_nodes = len(nodes)
        self.concat = list(concat)
        self.reduction = reduction
        self.edge_index = [(k, inp) for k, _, inp in edges]
        ops = []
        for _, op, inp in edges:
            stride = 2 if reduction and inp < 2 else 1
            module = make_op(op, channels, stride, batch_norm)
            assert module is not None
            ops.append(module)
        self.ops = nn.ModuleList(ops)

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states: list[Tensor | None] = [
            self.pre0(s0) if self.pre0 is not None else None,
            self.pre1(s1) if self.pre1 is not None else None,
        ]
        for k in range(self.n_nodes):
            terms = []
            for (node, inp), op in zip(self.edge_index, self.ops, strict=True):
                if node == k:
                    state = states[inp]
                    assert state is not None
                    terms.append(op(state))
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            states.append(total)
        outs = [states[i] for i in self.concat]
        assert all(o is not None for o in outs)
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)  # type: ignore[arg-type]
