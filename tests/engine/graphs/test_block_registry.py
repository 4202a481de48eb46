"""Blocks register their data flow with the parameter graph; the graph never imports the zoo."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from workers.graphs.params import blocks
from workers.graphs.params.graph import (
    EDGE_TYPES,
    GraphBuilder,
    block_handler,
    build_param_graph,
    graph_features,
    params_from_features,
    register_block,
)
from workers.zoo import builtin
from workers.zoo.build import build_model

ROOT = Path(__file__).resolve().parents[3]


class _SkipMLP(nn.Module):
    """``x + fc2(relu(fc1(x)))``: not a chain, so the graph needs to be told."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


def _skip_mlp_edges(builder: GraphBuilder, block: nn.Module, inputs: Tensor | None) -> Tensor:
    x = builder.inputs(inputs, block.fc1.in_features, block.fc1)
    out = builder.linear(block.fc2, builder.linear(block.fc1, x))
    builder.aux_edges(x, out, EDGE_TYPES["residual"])
    return out


register_block(_SkipMLP, _skip_mlp_edges)


class _UnregisteredSkipMLP(_SkipMLP):
    """Same layers, no registration: a subclass may change ``forward``, so it is not trusted."""


def test_the_zoo_registers_its_non_chain_blocks_with_the_handlers_of_the_graph_package():
    assert block_handler(builtin.ResidualBlock) is blocks.residual_conv_block
    assert block_handler(builtin.CharTransformer) is blocks.gpt2_decoder
    assert block_handler(builtin.Llama) is blocks.llama_decoder


def test_the_graph_package_imports_no_model_code():
    code = (
        "import sys, workers.graphs.params.graph, workers.graphs.params.summary; "
        "print(sorted(m for m in sys.modules if m.startswith('workers.zoo')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_built_in_model_constructed_directly_gets_the_same_graph_as_one_from_the_zoo():
    direct = builtin.ResidualCNN(in_channels=2, width=4, num_blocks=2, num_classes=3)
    zoo = build_model(
        "cnn_residual", {"in_channels": 2, "width": 4, "num_blocks": 2, "num_classes": 3}
    )
    a, b = build_param_graph(direct), build_param_graph(zoo)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)
    assert (a.edge_type == EDGE_TYPES["residual"]).sum() == 2 * 4


def test_a_registered_custom_block_gets_its_residual_edges_and_round_trips_its_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), _SkipMLP(4), nn.Linear(4, 2))
    graph = build_param_graph(model)
    assert (graph.edge_type == EDGE_TYPES["residual"]).sum() == 4
    params = {n: p.detach() for n, p in model.named_parameters()}
    restored = params_from_features(graph, graph_features(graph, params))
    assert all(torch.equal(restored[n], params[n]) for n in params)


def test_an_unregistered_subclass_is_read_from_its_traced_forward_not_from_its_parent():
    # Handlers are found by exact class, so the subclass is traced; its forward is the
    # parent's, so the traced graph equals the registered handler's, edge for edge.
    torch.manual_seed(0)
    registered = nn.Sequential(nn.Linear(3, 4), _SkipMLP(4))
    unregistered = nn.Sequential(nn.Linear(3, 4), _UnregisteredSkipMLP(4))
    a, b = build_param_graph(registered), build_param_graph(unregistered)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)
    assert a.segments == b.segments


def test_a_block_keeps_its_first_handler_and_registering_it_again_is_harmless():
    assert register_block(_SkipMLP, _skip_mlp_edges) is _skip_mlp_edges
    with pytest.raises(ValueError, match="already has a parameter-graph handler"):
        register_block(_SkipMLP, blocks.residual_conv_block)
    assert block_handler(_SkipMLP) is _skip_mlp_edges
    with pytest.raises(TypeError):
        register_block(object, _skip_mlp_edges)  # type: ignore[arg-type]
