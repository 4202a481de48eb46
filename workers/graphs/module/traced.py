"""Module graphs of live models: ``torch.fx`` symbolic tracing, forward hooks as fallback.

``module_graph`` traces with fx (method ``"fx"``) and falls back to ``hooks_graph`` (method
``"hooks"``: forward hooks plus a ``TorchFunctionMode`` that follows tensors by identity) for
models fx cannot trace (data-dependent control flow, ...).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from workers.graphs.module.builder import (
    GLUE_MODULES,
    GLUE_OPS,
    Builder,
    dedupe,
    is_leaf_module,
    node_ids,
    op_type,
    param_info,
    shape_of,
)

log = logging.getLogger(__name__)

_NON_TENSOR_METHODS = frozenset(
    {
        "size",
        "dim",
        "numel",
        "nelement",
        "stride",
        "element_size",
        "is_contiguous",
        "item",
        "tolist",
        "get_device",
        "is_floating_point",
        "is_complex",
    }
)
_NON_TENSOR_ATTRS = frozenset(
    {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse"}
)


# ----------------------------------------------------------------------------- torch.fx


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf_module(m)


def module_graph(
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    max_nodes: int = 5000,
) -> dict[str, Any]:
    """Module-level graph of ``model`` (see the module docstring for the format).

    ``example`` (a tensor or tuple of tensors on the model's device, meta works) is used for
    shape propagation and by the hooks fallback; shapes are best effort (``out_shape`` None
    when unknown). At most ``max_nodes`` nodes are emitted (``truncated`` tells).
    """
    examples = example if isinstance(example, tuple) else (example,)
    try:
        tracer = _LeafTracer()
        graph = tracer.trace(model, concrete_args=_defaults_beyond(model, len(examples)))
        gm = fx.GraphModule(tracer.root, graph)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        log.info("fx tracing failed (%s: %s); using forward hooks", type(exc).__name__, exc)
        return hooks_graph(model, examples, max_nodes=max_nodes)
    have_shapes = _propagate_shapes(gm, examples)
    return _graph_from_fx(gm, model, have_shapes, len(examples), max_nodes)


def _defaults_beyond(model: nn.Module, num_inputs: int) -> dict[str, Any] | None:
    # Arguments after the example inputs keep their defaults. Without this fx would make them
    # placeholders (Proxies), and ``if extra is not None`` would take the wrong branch.
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return None
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    params = [p for p in signature.parameters.values() if p.kind in kinds]
    defaults = {
        p.name: p.default for p in params[num_inputs:] if p.default is not inspect.Parameter.empty
    }
    return defaults or None


def _propagate_shapes(gm: fx.GraphModule, examples: tuple[torch.Tensor, ...]) -> bool:
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        # ShapeProp prints a traceback before raising; the failure is reported below instead.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(*examples)
    except Exception as exc:  # noqa: BLE001 - shapes are optional
        log.info("shape propagation failed (%s: %s)", type(exc).__name__, exc)
        return False
    return True


def _fx_is_tensor(node: fx.Node, have_shapes: bool, tensorish: dict[fx.Node, bool]) -> bool:
    if have_shapes:
        return "tensor_meta" in node.meta
    # Heuristic without shapes: size queries and Python builtins yield numbers; everything
    # else computed from a tensor is a tensor.
    if node.op == "call_module":
        return True
    if node.op == "call_method" and node.target in _NON_TENSOR_METHODS:
        return False
    if node.op == "call_function":
        if node.target in (len, int, float, bool):
            return False
        if node.target is getattr and node.args[1] in _NON_TENSOR_ATTRS:
            return False
        if node.target is operator.getitem:
            return tensorish.get(node.args[0], False)  # type: ignore[arg-type]
    return any(tensorish.get(i, False) for i in node.all_input_nodes)


def _graph_from_fx(
    gm: fx.GraphModule, model: nn.Module, have_shapes: bool, num_inputs: int, max_nodes: int
) -> dict[str, Any]:
    b = Builder(max_nodes)
    named_params = dict(model.named_parameters(remove_duplicate=False))
    # For every fx node: the kept graph nodes its value comes from, and the parameters that
    # reached it through folded nodes (get_attr of a parameter, then glue) and still need a
    # kept node to be attached to.
    sources: dict[fx.Node, frozenset[int]] = {}
    pending: dict[fx.Node, tuple[dict[str, Any], ...]] = {}
    tensorish: dict[fx.Node, bool] = {}
    placeholders: list[fx.Node] = []

    for node in gm.graph.nodes:
        inputs = [i for i in node.all_input_nodes if tensorish.get(i, False)]
        src = frozenset().union(*(sources[i] for i in inputs))
        carried = dedupe(p for i in inputs for p in pending[i])
        shape = shape_of(node.meta.get("tensor_meta"))

        if node.op == "placeholder":
            # Extra forward() arguments left at their (non-tensor) defaults are not inputs.
            position = len(placeholders)
            placeholders.append(node)
            tensorish[node] = "tensor_meta" in node.meta if have_shapes else position < num_inputs
            if tensorish[node]:
                node_id = b.add(str(node.target), "input", "input", out_shape=shape)
            sources[node], pending[node] = node_ids(node_id if tensorish[node] else None), ()
            continue
        if node.op == "output":
            b.add("output", "output", "output", params=carried, sources=src)
            continue
        if node.op == "get_attr":
            tensorish[node] = True
            param = named_params.get(str(node.target))
            sources[node] = frozenset()
            pending[node] = (param_info(str(node.target), param),) if param is not None else ()
            b.folded += 1
            continue

        tensorish[node] = _fx_is_tensor(node, have_shapes, tensorish)
        keep = False
        if not tensorish[node]:
            src, carried = frozenset(), ()
        elif node.op == "call_module":
            module = model.get_submodule(str(node.target))
            if not isinstance(module, GLUE_MODULES):
                keep = True
                params = [param_info(f"{node.target}.{n}", p) for n, p in module.named_parameters()]
                node_id = b.add(
                    str(node.target),
                    "module",
                    type(module).__name__,
                    params=dedupe([*params, *carried]),
                    out_shape=shape,
                    sources=src,
                )
                _note_attrs(b, node_id, module)
        else:
            op = op_type(node.target)
            if op not in GLUE_OPS:
                keep = True
                b.note_op(op)
                node_id = b.add(
                    node.name, "function", op, params=carried, out_shape=shape, sources=src
                )
                _note_module(b, node_id, node)
        if keep:
            sources[node], pending[node] = node_ids(node_id), ()
        else:
            sources[node], pending[node] = src, carried
            b.folded += 1
    return b.result("fx")


def _note_module(b: Builder, node_id: int | None, node: fx.Node) -> None:
    # A function node (a residual add, a cat) has no module name of its own; the module whose
    # forward called it lets a viewer fold it together with that module's layers.
    stack = node.meta.get("nn_module_stack") or {}
    if node_id is not None and stack:
        path, _ = list(stack.values())[-1]
        b.nodes[node_id]["module"] = str(path)


def _note_attrs(b: Builder, node_id: int | None, module: nn.Module) -> None:
    # Hyper-parameters that shapes alone do not tell (an attention layer's head count).
    # Convolution groups only when grouped (depthwise), not the usual 1.
    attrs = {
        key: value
        for key in ("num_heads", "groups")
        if isinstance(value := getattr(module, key, None), int) and (key != "groups" or value > 1)
    }
    if node_id is not None and attrs:
        b.nodes[node_id]["attrs"] = attrs


# ----------------------------------------------------------------------------- hooks


class _Provenance:
    """Maps live tensors (by identity) to the graph nodes and parameters they come from."""

    def __init__(self, named_params: dict[int, tuple[str, torch.Tensor]]) -> None:
        self.named_params = named_params
        # Keeping a reference to every tracked tensor stops CPython from reusing its id().
        self.table: dict[int, tuple[torch.Tensor, frozenset[int], tuple[dict[str, Any], ...]]]
        self.table = {}

    def set(
        self, value: Any, sources: frozenset[int], params: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Record ``sources``/``params`` as the origin of every tensor inside ``value``."""
        for t in tree_flatten(value)[0]:
            if isinstance(t, torch.Tensor):
                self.table[id(t)] = (t, sources, params)

    def lookup(self, *values: Any) -> tuple[frozenset[int], tuple[dict[str, Any], ...]]:
        """Union of the origins of all tensors inside ``values``."""
        src: frozenset[int] = frozenset()
        params: list[dict[str, Any]] = []
        for t in tree_flatten(values)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            entry = self.table.get(id(t))
            if entry is not None and entry[0] is t:
                src |= entry[1]
                params.extend(entry[2])
            elif id(t) in self.named_params:
                name, p = self.named_params[id(t)]
                params.append(param_info(name, p))
        return src, dedupe(params)


class _FunctionRecorder(TorchFunctionMode):
    """Adds function nodes for torch calls made outside leaf modules during a forward."""

    def __init__(self, builder: Builder, provenance: _Provenance) -> None:
        super().__init__()
        self.builder = builder
        self.provenance = provenance
        self.leaf_depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        """Run ``func``; if outside a leaf and tensor-valued, record it as a node or fold it."""
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf_depth or not any(isinstance(t, torch.Tensor) for t in tree_flatten(out)[0]):
            return out
        src, params = self.provenance.lookup(args, kwargs)
        op = op_type(func)
        if op in GLUE_OPS:
            self.builder.folded += 1
            self.provenance.set(out, src, params)
            return out
        self.builder.note_op(op)
        node_id = self.builder.add(
            op, "function", op, params=params, out_shape=shape_of(out), sources=src
        )
        self.provenance.set(out, node_ids(node_id))
        return out


def hooks_graph(
    model: nn.Module,
    examples: Sequence[torch.Tensor],
    *,
    max_nodes: int = 5000,
) -> dict[str, Any]:
    """Module graph from one real forward pass (method ``"hooks"``).

    Forward hooks on leaf modules give module nodes in call order; a TorchFunctionMode sees
    the torch calls between them. Data-flow edges come from tensor identity. Works for any
    model that runs, including data-dependent control flow, but only records the path taken.
    """
    b = Builder(max_nodes)
    named = {id(p): (n, p) for n, p in model.named_parameters(remove_duplicate=False)}
    provenance = _Provenance(named)
    for i, x in enumerate(examples):
        input_id = b.add(f"input_{i}" if i else "input", "input", "input", out_shape=shape_of(x))
        provenance.set(x, node_ids(input_id))
    recorder = _FunctionRecorder(b, provenance)
    stack: list[tuple[frozenset[int], tuple[dict[str, Any], ...]]] = []

    def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
        if recorder.leaf_depth == 0:
            stack.append(provenance.lookup(args, kwargs))
        recorder.leaf_depth += 1

    def make_hook(name: str):  # noqa: ANN202 - closure over the module name
        def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            recorder.leaf_depth -= 1
            if recorder.leaf_depth:
                return  # a leaf called inside another leaf is part of the outer node
            src, carried = stack.pop()
            if isinstance(module, GLUE_MODULES):
                b.folded += 1
                provenance.set(output, src, carried)
                return
            params = [param_info(f"{name}.{n}", p) for n, p in module.named_parameters()]
            first = next((t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)), None)
            node_id = b.add(
                name,
                "module",
                type(module).__name__,
                params=dedupe([*params, *carried]),
                out_shape=shape_of(first),
                sources=src,
            )
            provenance.set(output, node_ids(node_id))

        return hook

    handles = []
    try:
        for name, module in model.named_modules():
            if name and is_leaf_module(module):
                handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
                handles.append(module.register_forward_hook(make_hook(name), with_kwargs=True))
        with torch.no_grad(), recorder:
            output = model(*examples)
    finally:
        for handle in handles:
            handle.remove()
    src, _ = provenance.lookup(output)
    b.add("output", "output", "output", sources=src)
    return b.result("hooks")
