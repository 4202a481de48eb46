"""The parameter graph ("neural graph") that NiNo reads: neurons as nodes, weights as edges.

Conventions follow the published NiNo ones (``docs/NINO.md``) and reproduce the reference's
FM/16 graph exactly (same node order, edge order, edge types and features):

* Nodes are neurons. The input neurons of the first layer come first; every layer then adds,
  in parameter order, one node per 1-D parameter (bias) followed by its output neurons. Norm
  layers add one node per affine vector (weight, then bias) joined to the neurons they scale.
* Each weight element ``W[o, i, ...]`` is a directed edge input ``i`` -> output ``o``. Edges of
  one parameter form a contiguous source-major block (edge ``start + i * n_out + o``); conv
  kernels (at most 3x3) fill the first ``prod(kernel_size)`` of the 9 feature positions, all
  other parameters only position 0; larger kernels (traced builder) run over parallel edges.
* Edges that hold parameters come first, in ``model.named_parameters()`` order. Auxiliary
  edges follow (residual one-to-one edges, attention-head edges; feature 1.0), then one
  self-loop per node (feature 2.0), as in the reference.

Transformers (built-in ``transformer`` and ``llama`` families):

* Token embedding: one node per token id, edges token -> embedding neuron (type 5); learned
  position embedding: one node per position joined to the same embedding neurons (type 6).
* Attention: query neurons get edges from the block input (type 7); key weights run transposed,
  from the query neuron of the same head dimension back to the block input (type 8), so keys
  need no neurons of their own; value neurons get edges from the block input (type 9). One node
  per head joins (head -> neuron, type 11) that head's query and value neurons. The output
  projection reads the value neurons. Fused ``qkv`` tensors are split into these three roles;
  their biases become three nodes, joined to the query neurons, the block input (the key
  layer's outputs once transposed, as in the reference) and the value neurons.
* Grouped-query attention: key/value head ``g`` serves query heads ``g*G .. g*G+G-1``; its key
  rows run from the query neurons of head ``g*G`` and the output projection reads, for query
  head ``h``, the value neurons of head ``h // G`` (so node pairs repeat: multi-edges).
* SwiGLU: gate and up projections share one set of hidden neurons (two edges per pair).
* Residual connections are one-to-one edges (type 10) from the block's input neurons to the
  neurons that receive the sum; those neurons are the stream from then on.

Which builder reads a model (``build_param_graph``): models containing a block registered
with ``register_block`` (``registry``; ``workers.zoo.builtin`` registers its ``ResidualBlock``,
``CharTransformer`` and ``Llama`` with the handlers of ``blocks``) are read by the chain
builder (``builder``): containers as chains in registration order, registered blocks by their
handler, which knows their data flow. Every other model is read from its traced data flow
(``traced``: torch.fx plus neuron labels, ``labels``; the layers' edges in ``layers``), which
follows skips, concatenations, flattens, grouped convolutions, class tokens and
``nn.MultiheadAttention`` and attention written with tensor ops, leaves kernels above 3x3 and
what it cannot
place to the base optimizer (``ParamGraph.left``, ``ParamGraph.coverage()``) and refuses, naming
the op, data flow it cannot follow. The built-in chains (``mlp``, ``cnn``: the golden FM/16)
get the same graph from both builders. ``loose`` adds left-out parameters as unconnected edges
for the per-parameter WNN+ baseline.

This module is the package's front door and re-exports its public names; the code lives in
``container`` (``ParamGraph``, edge features, the map back to parameters, PyG ``Data``),
``builder`` (``GraphBuilder``), ``registry``, ``blocks``, ``traced``,
``labels``, ``layers`` and ``loose``.
"""

from __future__ import annotations

from torch import Tensor, nn

from workers.graphs.params.builder import GraphBuilder
from workers.graphs.params.container import (
    AUX_VALUE,
    EDGE_TYPES,
    MAX_FEAT,
    SELF_LOOP_VALUE,
    ParamGraph,
    ParamLayout,
    ParamSegment,
    graph_features,
    params_from_features,
)
from workers.graphs.params.registry import BlockHandler, block_handler, register_block
from workers.graphs.params.traced import traced_param_graph

__all__ = [
    "AUX_VALUE",
    "EDGE_TYPES",
    "MAX_FEAT",
    "SELF_LOOP_VALUE",
    "BlockHandler",
    "GraphBuilder",
    "ParamGraph",
    "ParamLayout",
    "ParamSegment",
    "block_handler",
    "build_param_graph",
    "chain_param_graph",
    "graph_features",
    "params_from_features",
    "register_block",
    "uses_registered_blocks",
]


def uses_registered_blocks(model: nn.Module) -> bool:
    """True when some module of ``model`` has a ``register_block`` handler (built-in families)."""
    return any(block_handler(type(m)) is not None for m in model.modules())


def build_param_graph(model: nn.Module, example: Tensor | None = None) -> ParamGraph:
    """Build the parameter graph of ``model``.

    Models with registered blocks (the built-in residual CNN, GPT and Llama families) are read
    by the chain-and-handler builder (``GraphBuilder``); every other model from its traced data
    flow (``workers.graphs.params.traced``, on ``example`` or a guessed input), which leaves
    what it cannot place to the base optimizer (``ParamGraph.left``). Parameter values are
    never read, so a model on the meta device works (and costs no memory). Raises
    ``ModelError`` naming the layer or op the graph cannot represent.
    """
    if not uses_registered_blocks(model):
        return traced_param_graph(model, example)
    return chain_param_graph(model)


def chain_param_graph(model: nn.Module) -> ParamGraph:
    """The chain-and-handler builder: containers as chains, registered blocks by handler."""
    builder = GraphBuilder(model)
    builder.module(model, None, root=True)
    return builder.finish()
