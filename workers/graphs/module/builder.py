"""The module-graph document shared by every extractor: op vocabulary and node builder.

``Builder`` accumulates nodes and edges and emits the JSON-able document (format
``FORMAT``, described in :mod:`workers.graphs.module.graph`); ``op_type`` and
``is_leaf_module`` decide what becomes a node. The extractors (``traced`` for live models,
``exported`` for ``torch.export`` programs) only differ in how they walk a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

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
GLUE_MODULE_NAMES = frozenset(m.__name__ for m in GLUE_MODULES)
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


def shape_of(value: Any) -> list[int | str] | None:
    """Shape of a tensor, fake tensor or ``TensorMetadata`` as a list; None when unknown."""
    # Symbolic sizes (dynamic dims in exported programs) become strings such as "s0".
    # For tuple outputs (e.g. MultiheadAttention's (output, weights)) the first tensor counts.
    # (TensorMetadata is itself a NamedTuple with a ``shape`` field, hence the order.)
    if getattr(value, "shape", None) is None and isinstance(value, list | tuple):
        value = next((v for v in value if getattr(v, "shape", None) is not None), None)
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return [int(d) if isinstance(d, int) else str(d) for d in shape]


class Builder:
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


def param_info(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    """A node's entry for one parameter: its dotted name and shape."""
    return {"name": name, "shape": list(tensor.shape)}


def dedupe(params: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Parameter entries with repeated names dropped (first occurrence's position kept)."""
    return tuple({p["name"]: p for p in params}.values())


def node_ids(node_id: int | None) -> frozenset[int]:
    """The set of sources a value has when it comes from ``node_id`` (empty for None)."""
    return frozenset() if node_id is None else frozenset((node_id,))
