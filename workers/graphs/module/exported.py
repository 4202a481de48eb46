"""Module graphs of ``torch.export`` programs (method ``"export"``), from their metadata."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten

from workers.graphs.module.builder import (
    GLUE_MODULE_NAMES,
    GLUE_OPS,
    Builder,
    dedupe,
    node_ids,
    op_type,
    param_info,
    shape_of,
)


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
    b = Builder(max_nodes)
    sources: dict[fx.Node, frozenset[int]] = {}
    pending: dict[fx.Node, tuple[dict[str, Any], ...]] = {}
    groups: dict[str, int | None] = {}

    def origin(nodes: Iterable[Any]) -> tuple[frozenset[int], tuple[dict[str, Any], ...]]:
        found = [n for n in nodes if n in sources]
        src = frozenset().union(*(sources[n] for n in found))
        return src, dedupe(p for n in found for p in pending[n])

    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder":
            spec = specs.get(node.name)
            if spec is None or spec.kind == InputKind.USER_INPUT:
                node_id = b.add(node.name, "input", "input", out_shape=shape_of(val))
                sources[node], pending[node] = node_ids(node_id), ()
            else:
                sources[node] = frozenset()
                is_param = spec.kind == InputKind.PARAMETER
                pending[node] = (param_info(spec.target, val),) if is_param else ()
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
        if group is not None and group[2] in GLUE_MODULE_NAMES:
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
                b.nodes[node_id]["out_shape"] = shape_of(val)
            sources[node], pending[node] = node_ids(node_id), ()
            continue
        op = op_type(node.target)
        if op in GLUE_OPS:
            sources[node], pending[node] = src, carried
            b.folded += 1
            continue
        b.note_op(op)
        node_id = b.add(
            node.name, "function", op, params=carried, out_shape=shape_of(val), sources=src
        )
        sources[node], pending[node] = node_ids(node_id), ()
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
