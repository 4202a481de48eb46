"""Tables and summaries of a model's parameters and layers (no tracing needed)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch import nn

from workers.graphs.module.builder import is_leaf_module


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
