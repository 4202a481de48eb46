"""The parameter graph of any traceable network, read from its traced data flow.

``traced_param_graph(model)`` traces ``model`` with ``torch.fx`` (parameterised ``torch.nn``
layers stay whole; everything else is traced through), then runs the traced program once under
a fake-tensor mode (shapes only: no memory, no compute, meta-device models work) while
following which neuron every activation element belongs to (``labels``). Every parameterised
op adds its edges through the ``GraphBuilder`` primitives and the published edge types, so the
graphs read like the built-in ones:

* Neurons are channel positions: axis 1 of feature maps, the last axis of token features. The
  model input gets one neuron per input channel (or, for a ``Linear`` reading the flattened
  input, per input feature).
* ``Linear``/``Conv``: bias node, then output neurons; one edge per (input, output) pair
  holding the kernel positions. A weight stored ``[in, out]`` (``x @ W``, or transformers'
  ``Conv1D``: ``addmm(bias, x, W)``, as in GPT-2) gets the very edges of the ``nn.Linear``
  holding ``W.T``, and its output columns split into attention roles the same way. Grouped
  and depthwise convolutions get edges inside their groups only. A ``Linear`` after a
  flatten of ``C x H x W`` reads each channel through ``H*W`` weights, so it gets one edge per
  (channel, output) pair carrying ``H*W`` positions, like a kernel, which keeps the channel
  permutation symmetry.
* Kernels with more than 9 positions (5x5, 7x7, 11x11 stems, patch embeddings, the ``H*W``
  positions above) are left to the base optimizer: the measurement under ``LARGE_KERNELS``
  below found that nowcasting them hurts. The graph can instead spread them over
  ``ceil(positions / 9)`` parallel edges between the same two neurons, 9 positions each in
  row-major kernel order (``LARGE_KERNELS = "edges"``); either way their neurons, biases and
  everything around them stay on the graph.
* Norms: one node per affine vector joined to the normalised neurons (BatchNorm, LayerNorm,
  GroupNorm, RMSNorm, InstanceNorm; functional ``layer_norm``/``group_norm`` too).
* Residual adds: one-to-one residual edges (type 10) from the older operand's neurons to the
  newer one's, which carry the sum from then on (the published convention). Products of two
  feature maps (squeeze-and-excitation, gated MLPs): one-to-one edges (type 10, our convention:
  the published checkpoints have no gate type) from the gate (the operand that went through a
  sigmoid-like nonlinearity) to the gated neurons, which carry the product.
* Concatenation, split, chunk, flatten, permute and channel shuffles need no rule: the neuron
  labels go through the same op (``labels.apply``).
* Parameters used elementwise: a class token (concatenated along the sequence) or a learned
  position embedding (added) gets one node per position joined to the feature neurons (type 6);
  a layer scale or a free bias vector one node (type 4 for products, 2 for sums).
* Embeddings: one node per row, edges row -> embedding neuron (type 5); a second embedding
  added to an unused first one (positions) shares its neurons (type 6), as in the built-in GPT.
  An output head tied to the embedding table (GPT-2, ``tie_word_embeddings``) adds no weight
  edges: the table is placed once, as the embedding (the published graphs count it once too),
  and the head's outputs are the table's row nodes. A tied parameter goes by its first name.
* ``nn.MultiheadAttention``: the built-in GPT layout (query/key/value roles, keys transposed
  onto the query neurons, one node per head joined to its query and value neurons).
* Attention written with tensor ops (``q @ k.transpose``, softmax, ``@ v``, or
  ``F.scaled_dot_product_attention``, grouped-query attention included): the same layout, read
  from the labels of q, k and v (``workers.graphs.params.attention``); rotary position
  embeddings are a rotation inside a head (no edges, their pairing not represented). Norms
  written with tensor ops work too: a statistic over the channels kept for broadcasting
  (``mean(-1, keepdim=True)``) holds no neurons.
* Models fx cannot trace whose first layer is an ``Embedding`` (Hugging Face causal LMs) are
  read from their ``torch.export`` program instead (``tracing.trace``).

Never silently wrong: a parameter the graph cannot place faithfully (a kernel above 3x3, an
elementwise parameter of an odd layout, ``PReLU`` slopes, ``add_bias_kv``, a layer whose
inputs repeat channels irregularly, a parameter the forward does not use) is left to the base
optimizer and listed in ``ParamGraph.left`` with the reason; data flow the tracer cannot
follow (products of computed tensors other than attention, einsum, an ``addmm`` that adds
computed features rather than a bias, reductions over channels, an op it does not know,
untraceable Python control flow) raises ``ModelError`` naming the op and its module.

Which builder runs (``workers.graphs.params.builder.build_param_graph``): models containing a
block registered with ``register_block`` (the built-in residual CNN, GPT and Llama families)
keep the chain-and-handler builder, whose graphs encode the published conventions exactly;
every other model is traced here. The built-in chains traced here (``mlp``, ``cnn``, so also
the golden FM/16) give the very graph the chain builder gave, node for node and edge for edge
(``tests/engine/graphs/test_traced_builder.py`` checks it).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from workers.errors import ModelError
from workers.graphs.params import labels as L
from workers.graphs.params.attention import PRODUCTS, AttentionReader
from workers.graphs.params.builder import GraphBuilder
from workers.graphs.params.container import ParamGraph
from workers.graphs.params.labels import NO_NEURON, Val
from workers.graphs.params.layers import LayerWriter
from workers.graphs.params.tracing import (
    ShapeError,
    candidate_examples,
    eval_mode,
    first_layer,
    op_name,
    trace,
    where,
)

#: How kernels with more than ``MAX_FEAT`` positions (5x5, 7x7, patch embeddings, a Linear
#: after a flatten of more than 3x3 positions) are placed: ``"edges"`` (parallel edges of 9
#: positions each) or ``"base"`` (left to the base optimizer). Chosen by measurement
#: (``bench/nino_kernels.py``, ``bench/results/nino_kernels.json``): Fashion-MNIST CNN with a
#: k x k stem and a k x k conv, first jump of the published ``nino_no_posw`` at step 1000, test
#: loss (median of 3 seeds) 1 / 25 AdamW steps after the jump:
#:
#:     k   AdamW (no jump)   edges           base            resample to 3x3
#:     5   0.476 / 0.513     1.653 / 0.579   0.729 / 0.531   0.884 / 0.559
#:     7   0.456 / 0.467     1.792 / 0.523   0.985 / 0.483   1.562 / 0.507
#:
#: Leaving those tensors to the base optimizer hurts least; nowcasting them either way makes
#: the post-jump dip deeper and slower to recover. (On this task the first jump is behind
#: AdamW even at k = 3: 1.232 / 0.600, so these numbers rank the mappings, not NiNo.)
LARGE_KERNELS = "base"


_ACTIVATIONS = frozenset(
    "relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh leaky_relu elu selu celu "
    "mish softplus softsign logsigmoid exp".split()
)
_PASS = frozenset(
    "dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout stochastic_depth "
    "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d "
    "adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d "
    "adaptive_max_pool3d lp_pool2d interpolate upsample contiguous clone to float double half "
    "bfloat16 type type_as detach alias neg abs pow sqrt rsqrt square clamp clamp_min clamp_max "
    "clip softmax log_softmax identity".split()
)
# Pass-through ops that change no value (dtype casts, copies).
_COPIES = frozenset(
    "contiguous clone to float double half bfloat16 type type_as detach alias identity".split()
)
_SHAPE = frozenset(
    "view reshape flatten unflatten permute transpose t squeeze unsqueeze expand expand_as "
    "repeat repeat_interleave flip roll narrow slice select movedim swapaxes getitem split chunk "
    "unbind tensor_split cat concat concatenate stack".split()
)
_REDUCE = frozenset("mean sum amax amin max min std var".split())
_BINARY = {
    "add": "add", "iadd": "add", "sub": "sub", "isub": "sub", "rsub": "sub",
    "mul": "mul", "imul": "mul", "div": "div", "truediv": "div", "itruediv": "div",
}  # fmt: skip
_PRODUCTS = frozenset(
    "matmul bmm mm einsum baddbmm addmm scaled_dot_product_attention "
    "multi_head_attention_forward".split()
)


def traced_param_graph(model: nn.Module, example: Tensor | None = None) -> ParamGraph:
    """The parameter graph of ``model`` read from one traced forward pass on ``example``.

    ``example`` is one input batch (its values are never read); without it an input shape is
    guessed from the first layer (``default_example``). See the module docstring for the
    layout, what is left to the base optimizer and what is refused.
    """
    return _read(model, example).finish()


def traced_coverage(model: nn.Module, example: Tensor | None = None) -> dict[str, Any]:
    """``ParamGraph.coverage()`` of the traced graph without writing its edges (cheap for
    huge models: only the data flow is read)."""
    reader = _read(model, example)
    nowcast = sum(int(torch.Size(s).numel()) for s in reader.b.param_shapes.values())
    left = reader.left_params()
    return {
        "nowcast": nowcast,
        "total": nowcast + sum(n for _, _, n in left),
        "left": [{"name": name, "reason": reason} for name, reason, _ in left],
    }


def read_data_flow(model: nn.Module, example: Tensor | None = None) -> _Reader:
    """The traced reading before its edges are written: ``.b`` (the ``GraphBuilder``, for
    counts), ``.left_params()`` and ``.finish()`` (the ``ParamGraph``)."""
    return _read(model, example)


def _read(model: nn.Module, example: Tensor | None) -> _Reader:
    try:
        return _read_once(model, example)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model this reader does not know how to read
        raise ModelError(
            f"The parameter graph could not read this model's data flow ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})."
        ) from exc


def _read_once(model: nn.Module, example: Tensor | None) -> _Reader:
    gm = trace(model)
    if "example" in gm.meta:
        # Exported here for tracing: the program accepts only the token window it was exported
        # with, and a caller's batch (a train job's, of the data's context) would fail its
        # guards; the channel data flow does not depend on the window's length.
        example = gm.meta["example"]
    examples = [example] if example is not None else list(candidate_examples(model, gm))
    first: ShapeError | None = None
    for candidate in examples:
        try:
            reader = _Reader(model, gm)
            reader.read(candidate)
            return reader
        except ShapeError as error:  # the guessed input does not fit: try the next one
            first = first or error
    raise ModelError(
        f"Could not run the model on an example input to read its data flow ({first.cause})."
        if first is not None
        else "Could not find an example input to read the model's data flow."
    )


# -- reading the data flow ----------------------------------------------------------------------


class _Reader(fx.Interpreter):
    """Runs the traced program on fake tensors, labelling neurons and adding edges."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.model = model
        self.modules = dict(gm.named_modules())
        # Every name a parameter goes by (tied ones twice): modules look theirs up by path.
        self.params = dict(model.named_parameters(remove_duplicate=False))
        self.unique = dict(model.named_parameters())
        self.b = GraphBuilder(model)
        self.vals: dict[fx.Node, Any] = {}
        self.left: dict[str, str] = {}
        # LARGE_KERNELS is read when a model is read, so a benchmark may switch it.
        self.w = LayerWriter(self.b, self.left, self.params, large_kernels=LARGE_KERNELS)
        self.attention = AttentionReader(self.w)

    def read(self, example: Tensor) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        device = next(iter(self.unique.values())).device if self.unique else example.device
        quiet = logging.getLogger("torch._subclasses.fake_tensor")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # a guessed input that does not fit is not an error
        with (
            eval_mode(self.model),
            FakeTensorMode(allow_non_fake_inputs=True) as mode,
            contextlib.ExitStack() as restore,
        ):
            restore.callback(quiet.setLevel, level)
            try:
                self.run(mode.from_tensor(example.to(device)))
            except ModelError as error:
                # fx appends the failing node and a hint to the message: keep ours only.
                raise ModelError(str(error).split("\n")[0]) from None

    def left_params(self) -> list[tuple[str, str, int]]:
        """``(name, reason, elements)`` of every parameter the graph does not hold."""
        left = [(n, r, self.params[n].numel()) for n, r in self.left.items()]
        claimed = set(self.b.param_shapes) | set(self.left)
        for name, p in self.unique.items():
            if name not in claimed:
                left.append((name, "not used by the traced forward pass", p.numel()))
        return left

    def finish(self) -> ParamGraph:
        """The graph, with what is left to the base optimizer."""
        return self.b.finish(self.left_params())

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as exc:  # noqa: BLE001 - e.g. a shape mismatch of a guessed input
            cause = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ShapeError(f"{cause} at {where(n)}") from exc
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily():  # labels are small real tensors
            self.vals[n] = self.label(n, result)
        return result

    # -- dispatch ------------------------------------------------------------------------------

    def label(self, n: fx.Node, result: Any) -> Any:
        if n.op == "placeholder":
            return self.input_val(n, result)
        if n.op == "get_attr":
            if n.target in self.params and isinstance(result, Tensor):
                ids = torch.arange(result.numel()).view(result.shape)
                # A tied parameter goes by its first name (an exported program picks any).
                return Val(ids, param=self.w.canonical[str(n.target)])
            return None
        if n.op == "output":
            return None
        args = fx.node.map_arg(n.args, lambda a: self.vals.get(a))
        kwargs = fx.node.map_arg(n.kwargs, lambda a: self.vals.get(a))
        if n.op == "call_module" and str(n.target) == "_guards_fn":
            return None  # an exported program's input checks: no data flow
        if n.op == "call_module":
            return self.w.module(n, self.modules[str(n.target)], str(n.target), args, kwargs,
                                 self._values(n), result)  # fmt: skip
        if not _has_tensor(result):
            return None
        op = op_name(n)
        flows = [v for v in _flat(args) + _flat(kwargs) if isinstance(v, Val) and v.has_neurons]
        if op in ("getitem", "getattr") and isinstance(args[0], (tuple, list)):
            return args[0][n.args[1]]
        if not flows:
            return None
        if any(isinstance(v, Val) and v.scores is not None for v in _flat(args)):
            return self.attention.scores_op(n, op, args, self._values(n), result)
        if op in PRODUCTS and _two_flows(op, args, kwargs):
            return self.attention.product(n, op, args, kwargs, self._values(n), result)
        if op in _BINARY:
            return self.binary(n, _BINARY[op], args, result)
        if op in _ACTIVATIONS or op in _PASS or op == "pad":
            return self.passthrough(n, op, args, result)
        if op in _SHAPE:
            return self.shape_op(n, op, args, kwargs, result)
        if op in _REDUCE:
            return self.reduce(n, op, args, kwargs, result)
        functional = self.w.functional(n, op, args, kwargs, self._values(n), result)
        if functional is not NotImplemented:
            return functional
        if op in _PRODUCTS:
            raise ModelError(
                f"The forward multiplies two computed tensors with {op} ({where(n)}), as "
                "attention written with tensor ops does; the parameter graph follows it only as "
                "matmul/bmm (q @ k^T, softmax, @ v) or scaled_dot_product_attention."
            )
        raise ModelError(
            f"The forward applies {op} ({where(n)}); the parameter graph cannot follow data "
            "through that op."
        )

    def _values(self, n: fx.Node) -> tuple[Any, Any]:
        return (
            fx.node.map_arg(n.args, lambda a: self.env[a]),
            fx.node.map_arg(n.kwargs, lambda a: self.env[a]),
        )

    # -- the model input -------------------------------------------------------------------------

    def input_val(self, n: fx.Node, value: Any) -> Val | None:
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.dim() < 2:
            return None  # token ids and other non-feature inputs hold no neurons
        first = first_layer(self.module)
        flat = int(math.prod(value.shape[1:]))
        if isinstance(first, nn.Linear) and value.dim() > 2 and first.in_features == flat:
            # An MLP on images: every input element is an input neuron (flatten order).
            return Val(self.b.nodes(flat).view(1, *value.shape[1:]))
        if isinstance(first, nn.Linear | nn.LayerNorm) or value.dim() == 3 and not isinstance(
            first, nn.Conv1d
        ):
            return Val(L.along(self.b.nodes(value.shape[-1]), value.dim() - 1, value.dim()))
        return Val(L.along(self.b.nodes(value.shape[1]), 1, value.dim()))

    # -- elementwise ----------------------------------------------------------------------------

    def passthrough(self, n: fx.Node, op: str, args: Any, result: Any) -> Any:
        x = args[0]
        if not isinstance(x, Val):
            raise ModelError(f"The forward applies {op} ({where(n)}) in a way it cannot read.")
        if op == "pad":
            pad = list(n.args[1]) if len(n.args) > 1 else list(n.kwargs.get("pad", ()))
            shape = self.env[n.args[0]].shape
            for i in range(0, len(pad), 2):
                axis = len(shape) - 1 - i // 2
                if (pad[i] or pad[i + 1]) and x.labels.shape[axis] > 1:
                    raise ModelError(f"The forward pads across channels ({where(n)}).")
            return x
        if x.param is not None:
            return x
        if op in _ACTIVATIONS or op in ("softmax",):
            return Val(x.labels, act=op)
        if op in _COPIES:
            return x  # the same values: an embedding output stays one (GPT-2's wpe(...).to())
        return x if x.embedding is None else Val(x.labels, act=x.act)

    def binary(self, n: fx.Node, op: str, args: Any, result: Any) -> Val:
        a, b = (args[0], args[1]) if len(args) > 1 else (args[0], None)
        a = a if isinstance(a, Val) else None
        b = b if isinstance(b, Val) else None
        if a is None or b is None:
            # A constant or a statistic: no edges. An embedding output used here is no longer
            # one a second embedding could be summed into.
            kept = a or b
            return replace(kept, embedding=None) if kept is not None else None
        if a.param is not None and b.param is not None:
            raise ModelError(f"The forward combines two parameters with {op} ({where(n)}).")
        if a.param is not None or b.param is not None:
            param, flow = (a, b) if a.param is not None else (b, a)
            self.w.elementwise_param(n, op, param, flow.labels)
            return replace(flow, embedding=None)
        return self.w.join(n, op, a, b)

    # -- shapes -----------------------------------------------------------------------------------

    def shape_op(self, n: fx.Node, op: str, args: Any, kwargs: Any, result: Any) -> Any:
        arg_values, kw_values = self._values(n)
        data = args[0]
        if op in ("cat", "concat", "concatenate", "stack"):
            return self.concat(n, op, list(data), list(arg_values[0]), args, kwargs, result)
        if not isinstance(data, Val):
            raise ModelError(f"The forward applies {op} ({where(n)}) in a way it cannot read.")
        labels = L.full(data.labels, arg_values[0].shape)
        rest_args = list(arg_values[1:])
        if n.op == "call_method":
            fn = getattr(labels, "reshape" if op == "view" else op)
            if op == "expand_as":
                out = labels.expand(result.shape)
            elif op == "view" and rest_args and isinstance(rest_args[0], torch.dtype):
                return data
            else:
                out = fn(*rest_args, **kw_values)
        else:
            target = torch.reshape if op == "view" else n.target
            out = target(labels, *rest_args, **kw_values)  # type: ignore[operator]
        if isinstance(out, (tuple, list)):
            return type(out)(self._like(data, o) for o in out)
        return self._like(data, out)

    @staticmethod
    def _like(data: Val, labels: Tensor) -> Val:
        return Val(L.compact(labels), param=data.param, act=data.act, embedding=data.embedding)

    def concat(self, n: fx.Node, op: str, vals: list[Any], values: list[Tensor], args: Any,
               kwargs: Any, result: Tensor) -> Val:  # fmt: skip
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        flows = [v for v in vals if isinstance(v, Val) and v.param is None]
        parts = []
        for val, value in zip(vals, values, strict=True):
            if isinstance(val, Val) and val.param is not None:
                # A class token (or register tokens) joined along the sequence: its elements
                # pair with the neurons of the features it is concatenated with.
                if not flows or op == "stack":
                    raise ModelError(f"The forward concatenates parameters ({where(n)}).")
                other = flows[0].labels
                if other.shape[dim] != 1:
                    raise ModelError(
                        f"The forward concatenates a parameter along the channels ({where(n)})."
                    )
                shape = list(value.shape)
                reference = L.full(other, [*shape[:dim], 1, *shape[dim + 1 :]]).expand(shape)
                self.w.elementwise_param(n, "cat", val, reference)
                parts.append(reference)
            elif isinstance(val, Val):
                parts.append(L.full(val.labels, value.shape))
            else:
                parts.append(torch.full(tuple(value.shape), NO_NEURON, dtype=torch.long))
        fn = torch.stack if op == "stack" else torch.cat
        return Val(L.compact(fn(parts, dim)))

    def reduce(self, n: fx.Node, op: str, args: Any, kwargs: Any, result: Any) -> Any:
        x = args[0]
        if not isinstance(x, Val) or x.param is not None:
            raise ModelError(f"The forward reduces a parameter with {op} ({where(n)}).")
        arg_values, kw_values = self._values(n)
        dim = arg_values[1] if len(arg_values) > 1 else kw_values.get("dim")
        keepdim = (arg_values[2] if len(arg_values) > 2 else kw_values.get("keepdim", False))
        if not isinstance(keepdim, bool):
            keepdim = False
        shape = arg_values[0].shape
        if dim is None:
            dims = list(range(len(shape)))
        else:
            dims = [d % len(shape) for d in ([dim] if isinstance(dim, int) else dim)]
        if any(x.labels.shape[d] > 1 for d in dims) and keepdim:
            # A statistic over the channels broadcast back onto them (a norm written with
            # tensor ops: mean, var, x * rsqrt(mean(x^2))): it holds no neuron of its own.
            return None
        if any(x.labels.shape[d] > 1 for d in dims):
            raise ModelError(
                f"The forward reduces over the channels with {op} ({where(n)}); the parameter "
                "graph cannot follow that data flow."
            )
        labels = x.labels
        for d in sorted(dims, reverse=True):
            if not keepdim:
                labels = labels.squeeze(d) if labels.dim() > d else labels
        out = Val(labels, act=x.act)
        if isinstance(result, tuple):  # max/min with a dim return (values, indices)
            return (out, None)
        return out


def _has_tensor(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    return False


def _two_flows(op: str, args: Any, kwargs: Any) -> bool:
    """Whether a product multiplies computed features (attention), not features by a weight."""
    if op == "scaled_dot_product_attention":
        return True
    operands = list(args[:2]) if len(args) >= 2 else [*args, kwargs.get("other")]
    return all(isinstance(v, Val) and v.param is None and v.has_neurons for v in operands)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flat(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    return [value]


