"""Module-level architecture graphs: model in, JSON-able graph out.

A node is a leaf module call (Conv2d, Linear, a custom layer owning parameters, ...), a
compute function that is not inside a leaf (residual ``add``, ``cat``, ``matmul``, ...), a
model input or the output. Parameter-free glue (views, reshapes, ``getitem``, dropout, size
queries, ...) is folded away: its inputs are reconnected to its users, so edges are data flow
between the remaining nodes.

Three extractors share that output format:

* ``module_graph`` uses ``torch.fx`` symbolic tracing (method ``"fx"``), falling back to
  forward hooks plus a ``TorchFunctionMode`` that follows tensors by identity (``"hooks"``)
  for models fx cannot trace (data-dependent control flow, ...);
* ``graph_from_exported`` groups the aten nodes of a ``torch.export`` program by their
  ``nn_module_stack`` metadata (``"export"``).

This is a first version with a deliberately narrow interface; a later engine replaces it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

log = logging.getLogger(__name__)

FORMAT = "weightspace.module-graph/1"

# Parameter-free ops that only move, reinterpret or select data (or are no-ops at inference).
GLUE_OPS = frozenset(
    """
    getattr getitem flatten unflatten reshape view view_as permute transpose t contiguous
    squeeze unsqueeze expand expand_as repeat chunk split split_with_sizes tensor_split unbind
    narrow select slice clone detach alias to type type_as float half double bfloat16 long int
    bool cpu cuda movedim moveaxis swapaxes swapdims dropout dropout1d dropout2d dropout3d
    alpha_dropout feature_alpha_dropout native_dropout identity _assert _to_copy _unsafe_view
    lift_fresh_copy _assert_tensor_metadata _assert_scalar sym_constrain_range_for_size
    arange zeros ones full empty zeros_like ones_like full_like empty_like tensor as_tensor
    scalar_tensor new_zeros new_ones new_full new_empty new_tensor stochastic_depth fill
    T mT H mH data real
    """.split()
)
# Compute/structural ops we expect to see outside leaf modules; anything else is still kept
# as a node but reported in ``unknown_ops`` so the next engine version knows what to support.
KNOWN_OPS = frozenset(
    """
    add sub mul div floor_divide neg pow sqrt rsqrt exp log abs clamp matmul bmm mm einsum
    baddbmm addmm linear conv1d conv2d conv3d cat stack concat concatenate softmax log_softmax
    relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh elu leaky_relu mish
    softplus adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
    adaptive_max_pool2d avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d mean
    sum amax amin max min var std norm normalize layer_norm batch_norm group_norm
    instance_norm rms_norm embedding scaled_dot_product_attention interpolate upsample pad
    roll where masked_fill channel_shuffle pixel_shuffle shifted_window_attention
    cumsum tril triu outer eq ne lt gt le ge logical_not logical_and logical_or
    index index_select gather scatter index_put _get_relative_position_bias _patch_merging_pad
    """.split()
)
# Module types that are glue, like their functional counterparts.
GLUE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_GLUE_MODULE_NAMES = frozenset(m.__name__ for m in GLUE_MODULES)
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
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_RENAMED_OPS = {
    "iadd": "add",
    "isub": "sub",
    "imul": "mul",
    "itruediv": "div",
    "truediv": "div",
    "ifloordiv": "floor_divide",
    "floordiv": "floor_divide",
    "imatmul": "matmul",
    "concat": "cat",
    "concatenate": "cat",
}


# ----------------------------------------------------------------------------- helpers


def op_type(target: Any) -> str:
    """Normalised name of an fx/aten/torch function target: ``operator.iadd`` -> ``add``.

    In-place variants map to their out-of-place name (``relu_`` -> ``relu``) because the
    graph describes data flow, not memory reuse.
    """
    if isinstance(target, str):
        name = target
    else:
        name = getattr(target, "_opname", None) or getattr(target, "__name__", None)
        name = name or str(target)
    if name == "__get__":
        # Tensor properties (x.T, x.data) reach a TorchFunctionMode as descriptor getters.
        name = getattr(getattr(target, "__self__", None), "__name__", name)
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        name = name[2:-2]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return _RENAMED_OPS.get(name, name)


def is_leaf_module(module: nn.Module) -> bool:
    """Whether ``module`` is one node of the module graph rather than traced through.

    Built-in ``torch.nn`` layers are leaves (their forwards are not symbolically traceable in
    general, e.g. MultiheadAttention); so are other modules that own parameters directly and
    have no parameterised children (e.g. torchvision's LayerNorm2d). Containers never are.
    """
    if isinstance(module, _CONTAINERS):
        return False
    if type(module).__module__.startswith(("torch.nn.", "torch.ao.nn.")):
        return True
    if next(module.parameters(recurse=False), None) is None:
        return False
    return all(next(child.parameters(), None) is None for child in module.children())


def parameter_table(model: nn.Module) -> list[dict[str, Any]]:
    """One row per parameter tensor: name, shape, dtype (e.g. ``"float32"``) and numel.

    Shared parameters appear once, under their first name, matching ``model.parameters()``.
    """
    return [
        {
            "name": name,
            "shape": list(p.shape),
            "dtype": str(p.dtype).removeprefix("torch."),
            "numel": p.numel(),
        }
        for name, p in model.named_parameters()
    ]


def layer_summary(model: nn.Module) -> dict[str, int]:
    """Count of leaf modules with parameters, by class name (e.g. ``{"Conv2d": 20, ...}``)."""
    counts = Counter(
        type(m).__name__
        for m in model.modules()
        if is_leaf_module(m) and next(m.parameters(), None) is not None
    )
    return dict(sorted(counts.items()))


def layers_from_graph(graph: dict[str, Any]) -> dict[str, int]:
    """Like ``layer_summary`` but from a graph: module nodes with parameters, by type.

    Used for exported programs, where the original module objects are not available.
    """
    seen: dict[str, str] = {}
    for node in graph["nodes"]:
        if node["op"] == "module" and node["params"]:
            seen.setdefault(node["name"], node["type"])
    return dict(sorted(Counter(seen.values()).items()))


def _shape(value: Any) -> list[int | str] | None:
    # Symbolic sizes (dynamic dims in exported programs) become strings such as "s0".
    # For tuple outputs (e.g. MultiheadAttention's (output, weights)) the first tensor counts.
    # (TensorMetadata is itself a NamedTuple with a ``shape`` field, hence the order.)
    if getattr(value, "shape", None) is None and isinstance(value, list | tuple):
        value = next((v for v in value if getattr(v, "shape", None) is not None), None)
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return [int(d) if isinstance(d, int) else str(d) for d in shape]


class _Builder:
    """Accumulates nodes and edges in the module-graph format."""

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        self.nodes: list[dict[str, Any]] = []
        self.edges: dict[tuple[int, int], None] = {}  # ordered set
        self.folded = 0
        self.unknown_ops: set[str] = set()
        self.truncated = False

    def add(
        self,
        name: str,
        op: str,
        type_: str,
        params: Iterable[dict[str, Any]] = (),
        out_shape: list[int | str] | None = None,
        sources: Iterable[int] = (),
    ) -> int | None:
        """Append a node and edges from ``sources``; None once ``max_nodes`` is reached."""
        if len(self.nodes) >= self.max_nodes:
            self.truncated = True
            return None
        node_id = len(self.nodes)
        self.nodes.append(
            {
                "id": node_id,
                "name": name,
                "op": op,
                "type": type_,
                "params": list(params),
                "out_shape": out_shape,
            }
        )
        for src in sorted(sources):
            self.connect(src, node_id)
        return node_id

    def connect(self, src: int, dst: int) -> None:
        """Add the edge src -> dst (self-loops and duplicates are ignored)."""
        if src != dst:
            self.edges[(src, dst)] = None

    def add_params(self, node_id: int, params: Iterable[dict[str, Any]]) -> None:
        """Attach parameters to an existing node, skipping names it already has."""
        have = {p["name"] for p in self.nodes[node_id]["params"]}
        for p in params:
            if p["name"] not in have:
                self.nodes[node_id]["params"].append(p)
                have.add(p["name"])

    def result(self, method: str) -> dict[str, Any]:
        """The JSON-able graph document."""
        if not self.truncated:
            self._prune_dead_functions()
        return {
            "format": FORMAT,
            "method": method,
            "nodes": self.nodes,
            "edges": [list(e) for e in self.edges],
            "folded": self.folded,
            "unknown_ops": sorted(self.unknown_ops),
            "truncated": self.truncated,
        }

    def _prune_dead_functions(self) -> None:
        # Function nodes whose result never reaches the output computed values only used by
        # Python itself (``if x.sum() > 0``, shape checks); they are not architecture.
        # Leaf modules are always kept.
        alive = [True] * len(self.nodes)
        changed = True
        while changed:
            changed = False
            has_users = {s for s, d in self.edges if alive[d]}
            for node in self.nodes:
                i = node["id"]
                if alive[i] and node["op"] == "function" and i not in has_users:
                    alive[i] = False
                    changed = True
        if all(alive):
            return
        new_id: dict[int, int] = {}
        kept = []
        for node in self.nodes:
            if alive[node["id"]]:
                new_id[node["id"]] = len(kept)
                kept.append({**node, "id": len(kept)})
        self.folded += len(self.nodes) - len(kept)
        self.nodes = kept
        self.edges = {
            (new_id[s], new_id[d]): None for s, d in self.edges if s in new_id and d in new_id
        }

    def note_op(self, op: str) -> None:
        """Remember ops outside ``KNOWN_OPS`` for the ``unknown_ops`` report."""
        if op not in KNOWN_OPS:
            self.unknown_ops.add(op)


def _param_info(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    return {"name": name, "shape": list(tensor.shape)}


def _dedupe(params: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple({p["name"]: p for p in params}.values())


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
    b = _Builder(max_nodes)
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
        carried = _dedupe(p for i in inputs for p in pending[i])
        shape = _shape(node.meta.get("tensor_meta"))

        if node.op == "placeholder":
            # Extra forward() arguments left at their (non-tensor) defaults are not inputs.
            position = len(placeholders)
            placeholders.append(node)
            tensorish[node] = "tensor_meta" in node.meta if have_shapes else position < num_inputs
            if tensorish[node]:
                node_id = b.add(str(node.target), "input", "input", out_shape=shape)
            sources[node], pending[node] = _ids(node_id if tensorish[node] else None), ()
            continue
        if node.op == "output":
            b.add("output", "output", "output", params=carried, sources=src)
            continue
        if node.op == "get_attr":
            tensorish[node] = True
            param = named_params.get(str(node.target))
            sources[node] = frozenset()
            pending[node] = (_param_info(str(node.target), param),) if param is not None else ()
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
                params = [
                    _param_info(f"{node.target}.{n}", p) for n, p in module.named_parameters()
                ]
                node_id = b.add(
                    str(node.target),
                    "module",
                    type(module).__name__,
                    params=_dedupe([*params, *carried]),
                    out_shape=shape,
                    sources=src,
                )
        else:
            op = op_type(node.target)
            if op not in GLUE_OPS:
                keep = True
                b.note_op(op)
                node_id = b.add(
                    node.name, "function", op, params=carried, out_shape=shape, sources=src
                )
        if keep:
            sources[node], pending[node] = _ids(node_id), ()
        else:
            sources[node], pending[node] = src, carried
            b.folded += 1
    return b.result("fx")


def _ids(node_id: int | None) -> frozenset[int]:
    return frozenset() if node_id is None else frozenset((node_id,))


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
                params.append(_param_info(name, p))
        return src, _dedupe(params)


class _FunctionRecorder(TorchFunctionMode):
    """Adds function nodes for torch calls made outside leaf modules during a forward."""

    def __init__(self, builder: _Builder, provenance: _Provenance) -> None:
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
            op, "function", op, params=params, out_shape=_shape(out), sources=src
        )
        self.provenance.set(out, _ids(node_id))
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
    b = _Builder(max_nodes)
    named = {id(p): (n, p) for n, p in model.named_parameters(remove_duplicate=False)}
    provenance = _Provenance(named)
    for i, x in enumerate(examples):
        provenance.set(
            x, _ids(b.add(f"input_{i}" if i else "input", "input", "input", out_shape=_shape(x)))
        )
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
            params = [_param_info(f"{name}.{n}", p) for n, p in module.named_parameters()]
            first = next((t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)), None)
            node_id = b.add(
                name,
                "module",
                type(module).__name__,
                params=_dedupe([*params, *carried]),
                out_shape=_shape(first),
                sources=src,
            )
            provenance.set(output, _ids(node_id))

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


# ----------------------------------------------------------------------------- torch.export


def graph_from_exported(
    ep: torch.export.ExportedProgram, *, max_nodes: int = 5000
) -> dict[str, Any]:
    """Module graph of an exported program (method ``"export"``).

    Aten nodes are grouped into one node per leaf-module call using ``nn_module_stack``
    metadata (each call has its own stack key, so a ReLU module used twice gives two nodes).
    Lifted parameters are attached to the nodes that consume them; buffers and constants are
    folded. ``out_shape`` may contain symbol names (e.g. ``"s0"``) for dynamic dimensions.
    """
    from torch.export.graph_signature import InputKind, OutputKind

    sig = ep.graph_signature
    specs = {getattr(s.arg, "name", None): s for s in sig.input_specs}
    param_owners = {fqn.rpartition(".")[0] for fqn in sig.parameters}
    b = _Builder(max_nodes)
    sources: dict[fx.Node, frozenset[int]] = {}
    pending: dict[fx.Node, tuple[dict[str, Any], ...]] = {}
    groups: dict[str, int | None] = {}

    def origin(nodes: Iterable[Any]) -> tuple[frozenset[int], tuple[dict[str, Any], ...]]:
        found = [n for n in nodes if n in sources]
        src = frozenset().union(*(sources[n] for n in found))
        return src, _dedupe(p for n in found for p in pending[n])

    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder":
            spec = specs.get(node.name)
            if spec is None or spec.kind == InputKind.USER_INPUT:
                node_id = b.add(node.name, "input", "input", out_shape=_shape(val))
                sources[node], pending[node] = _ids(node_id), ()
            else:
                sources[node] = frozenset()
                is_param = spec.kind == InputKind.PARAMETER
                pending[node] = (_param_info(spec.target, val),) if is_param else ()
                b.folded += 1
            continue
        if node.op == "output":
            outputs = node.args[0] if isinstance(node.args[0], list | tuple) else [node.args[0]]
            user = [
                o
                for o, s in zip(outputs, sig.output_specs, strict=False)
                if s.kind == OutputKind.USER_OUTPUT
            ]
            src, _ = origin(user)
            b.add("output", "output", "output", sources=src)
            continue
        if node.op != "call_function" or not _is_tensor_value(val):
            sources[node], pending[node] = frozenset(), ()
            b.folded += 1
            continue

        src, carried = origin(node.all_input_nodes)
        group = _export_group(node.meta.get("nn_module_stack") or {}, param_owners)
        if group is not None and group[2] in _GLUE_MODULE_NAMES:
            sources[node], pending[node] = src, carried
            b.folded += 1
            continue
        if group is not None:
            key, path, type_name = group
            if key not in groups:
                groups[key] = b.add(path, "module", type_name)
            node_id = groups[key]
            if node_id is not None:
                for s in src:
                    b.connect(s, node_id)
                b.add_params(node_id, carried)
                b.nodes[node_id]["out_shape"] = _shape(val)
            sources[node], pending[node] = _ids(node_id), ()
            continue
        op = op_type(node.target)
        if op in GLUE_OPS:
            sources[node], pending[node] = src, carried
            b.folded += 1
            continue
        b.note_op(op)
        node_id = b.add(
            node.name, "function", op, params=carried, out_shape=_shape(val), sources=src
        )
        sources[node], pending[node] = _ids(node_id), ()
    return b.result("export")


def _is_tensor_value(val: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in tree_flatten(val)[0])


def _export_group(
    stack: dict[str, tuple[str, Any]], param_owners: set[str]
) -> tuple[str, str, str] | None:
    # Outermost module on the stack that counts as a leaf, mirroring is_leaf_module: a
    # torch.nn layer (not a container), or a module owning parameters with no parameterised
    # descendants.
    for key, (path, type_) in stack.items():
        full = type_ if isinstance(type_, str) else f"{type_.__module__}.{type_.__qualname__}"
        short = full.rpartition(".")[2]
        if full.startswith(("torch.nn.modules.", "torch.ao.nn.")):
            if not full.startswith("torch.nn.modules.container."):
                return key, path, short
            continue
        if path in param_owners and not any(
            o != path and (path == "" or o.startswith(path + ".")) for o in param_owners
        ):
            return key, path, short
    return None
