"""Module-level architecture graphs: model in, JSON-able graph out.

A node is a leaf module call (Conv2d, Linear, a custom layer owning parameters, ...), a
compute function that is not inside a leaf (residual ``add``, ``cat``, ``matmul``, ...), a
model input or the output. Parameter-free glue (views, reshapes, ``getitem``, dropout, size
queries, ...) is folded away: its inputs are reconnected to its users, so edges are data flow
between the remaining nodes. With fx tracing, a function node also records ``module`` (the
module whose forward called it, e.g. ``layer1.0`` for a residual add) and a module node
``attrs`` its hyper-parameters shapes do not tell (``num_heads``, ``groups`` when > 1); the
graph viewer folds and labels nodes with them.

Three extractors share that output format (built by :mod:`.builder`):

* ``module_graph`` uses ``torch.fx`` symbolic tracing (method ``"fx"``), falling back to
  forward hooks plus a ``TorchFunctionMode`` that follows tensors by identity (``"hooks"``)
  for models fx cannot trace (data-dependent control flow, ...) — see :mod:`.traced`;
* ``graph_from_exported`` groups the aten nodes of a ``torch.export`` program by their
  ``nn_module_stack`` metadata (``"export"``) — see :mod:`.exported`.

Parameter tables and layer counts live in :mod:`.tables`. This module is the package's public
face: import from here (callers look ``module_graph`` up here at call time, so patching it
here takes effect everywhere).

This is a first version with a deliberately narrow interface; a later engine replaces it.
"""

from __future__ import annotations

from workers.graphs.module.builder import (
    FORMAT,
    GLUE_MODULES,
    GLUE_OPS,
    KNOWN_OPS,
    is_leaf_module,
    op_type,
)
from workers.graphs.module.exported import graph_from_exported
from workers.graphs.module.tables import layer_summary, layers_from_graph, parameter_table
from workers.graphs.module.traced import hooks_graph, module_graph

__all__ = [
    "FORMAT",
    "GLUE_MODULES",
    "GLUE_OPS",
    "KNOWN_OPS",
    "graph_from_exported",
    "hooks_graph",
    "is_leaf_module",
    "layer_summary",
    "layers_from_graph",
    "module_graph",
    "op_type",
    "parameter_table",
]
