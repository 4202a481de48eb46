"""Module-level graphs from torch.fx, forward hooks and torch.export."""

import json
from collections import Counter

import pytest
import torch
from torch import nn

from workers.graphs.module.graph import (
    FORMAT,
    graph_from_exported,
    hooks_graph,
    layer_summary,
    layers_from_graph,
    module_graph,
    parameter_table,
)
from workers.zoo.build import build_model, example_input


class Skip(nn.Module):
    """x -> fc1 -> relu -> (flatten/dropout glue) -> fc2, plus fc1 -> add (a skip)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc1(x)
        b = self.drop(self.act(a)).view(x.size(0), -1).contiguous()
        return self.fc2(b) + a


class DataDependent(Skip):
    """Same graph, but Python control flow on tensor values defeats symbolic tracing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc1(x)
        if a.sum() > -1e9:
            b = self.drop(self.act(a)).view(x.size(0), -1).contiguous()
            return self.fc2(b) + a
        return a


class DirectParam(nn.Module):
    """Uses a parameter outside any leaf module (like ViT's class token)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bias = nn.Parameter(torch.zeros(1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.bias.expand(x.size(0), -1)


def _by_name(graph: dict) -> dict[str, dict]:
    return {n["name"]: n for n in graph["nodes"]}


def _edges_by_name(graph: dict) -> set[tuple[str, str]]:
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    return {(names[s], names[d]) for s, d in graph["edges"]}


def _check_skip_graph(graph: dict, input_name: str) -> None:
    types = Counter(n["type"] for n in graph["nodes"])
    assert types == Counter({"input": 1, "Linear": 2, "ReLU": 1, "add": 1, "output": 1})
    add = next(n["name"] for n in graph["nodes"] if n["type"] == "add")
    assert _edges_by_name(graph) == {
        (input_name, "fc1"),
        ("fc1", "act"),
        ("act", "fc2"),
        ("fc2", add),
        ("fc1", add),
        (add, "output"),
    }
    assert graph["folded"] >= 3  # dropout, view, contiguous (and size)
    fc1 = _by_name(graph)["fc1"]
    assert fc1["params"] == [
        {"name": "fc1.weight", "shape": [4, 4]},
        {"name": "fc1.bias", "shape": [4]},
    ]


def test_skip_connection_fx():
    graph = module_graph(Skip().eval(), torch.randn(2, 4))
    assert graph["format"] == FORMAT and graph["method"] == "fx"
    _check_skip_graph(graph, "x")
    assert _by_name(graph)["fc2"]["out_shape"] == [2, 4]
    assert graph["unknown_ops"] == [] and graph["truncated"] is False
    json.dumps(graph)


def test_untraceable_model_falls_back_to_hooks():
    graph = module_graph(DataDependent().eval(), torch.randn(2, 4))
    assert graph["method"] == "hooks"
    _check_skip_graph(graph, "input")


def test_direct_parameters_attach_to_their_consumer():
    for graph in (
        module_graph(DirectParam(), torch.randn(2, 4)),
        hooks_graph(DirectParam(), (torch.randn(2, 4),)),
    ):
        add = next(n for n in graph["nodes"] if n["type"] == "add")
        assert add["params"] == [{"name": "bias", "shape": [1, 4]}], graph["method"]


def test_resnet18_graph():
    model = build_model("resnet18", device="meta")
    graph = module_graph(model, example_input("resnet18", device="meta"))
    assert graph["method"] == "fx"
    types = Counter(n["type"] for n in graph["nodes"])
    assert types["Conv2d"] == 20
    assert types["add"] == 8
    assert types["BatchNorm2d"] == 20 and types["Linear"] == 1
    nodes = _by_name(graph)
    assert nodes["x"]["op"] == "input" and nodes["x"]["out_shape"] == [2, 3, 224, 224]
    assert [nodes["x"]["id"], nodes["conv1"]["id"]] in graph["edges"]
    assert nodes["conv1"]["params"] == [{"name": "conv1.weight", "shape": [64, 3, 7, 7]}]
    assert nodes["fc"]["out_shape"] == [2, 1000]
    incoming = Counter(d for _, d in graph["edges"])
    for node in graph["nodes"]:
        if node["type"] == "add":
            assert incoming[node["id"]] == 2  # residual branch + identity/downsample
    # Every parameter appears on exactly one node.
    names = [p["name"] for n in graph["nodes"] for p in n["params"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())


def test_truncation():
    model = build_model("resnet18", device="meta")
    graph = module_graph(model, example_input("resnet18", device="meta"), max_nodes=10)
    assert graph["truncated"] is True
    assert len(graph["nodes"]) == 10
    assert all(s < 10 and d < 10 for s, d in graph["edges"])


def test_transformer_graph():
    model = build_model("transformer", device="meta")
    graph = module_graph(model, example_input("transformer", device="meta"))
    types = Counter(n["type"] for n in graph["nodes"])
    assert types["scaled_dot_product_attention"] == 3
    assert types["Linear"] == 3 * 4 + 1
    assert types["Embedding"] == 2
    qkv = _by_name(graph)["blocks.0.attn.qkv"]
    sdpa = next(n for n in graph["nodes"] if n["type"] == "scaled_dot_product_attention")
    # q, k and v are folded views of one qkv output: a single edge.
    assert [qkv["id"], sdpa["id"]] in graph["edges"]


def test_export_graph_matches_fx():
    model, x = build_model("resnet18"), example_input("resnet18")
    ep = torch.export.export(model, (x,))
    exported = graph_from_exported(ep)
    traced = module_graph(model, x)
    assert exported["method"] == "export"
    assert Counter(n["type"] for n in exported["nodes"]) == Counter(
        n["type"] for n in traced["nodes"]
    )
    assert len(exported["edges"]) == len(traced["edges"])
    assert layers_from_graph(exported) == layer_summary(model)
    conv1 = _by_name(exported)["conv1"]
    assert conv1["params"] == [{"name": "conv1.weight", "shape": [64, 3, 7, 7]}]


def test_export_graph_of_skip_model():
    ep = torch.export.export(Skip().eval(), (torch.randn(2, 4),))
    graph = graph_from_exported(ep)
    _check_skip_graph(graph, "x")


def test_parameter_table_and_layer_summary():
    model = build_model("resnet18", device="meta")
    table = parameter_table(model)
    assert len(table) == 62
    assert table[0] == {
        "name": "conv1.weight",
        "shape": [64, 3, 7, 7],
        "dtype": "float32",
        "numel": 64 * 3 * 7 * 7,
    }
    assert sum(r["numel"] for r in table) == 11_689_512
    assert layer_summary(model) == {"BatchNorm2d": 20, "Conv2d": 20, "Linear": 1}


@pytest.mark.slow
def test_every_torchvision_model_traces_with_fx():
    from workers.catalog.models import get_entry
    from workers.zoo.make_catalog import torchvision_models

    for name in torchvision_models():
        model = build_model(name, device="meta")
        graph = module_graph(model, example_input(name, device="meta"))
        assert graph["method"] == "fx", name
        assert not graph["truncated"], name
        names = {p["name"] for n in graph["nodes"] for p in n["params"]}
        unused = {n for n, _ in model.named_parameters()} - names
        # Auxiliary classifiers only run in training mode; the graph is the eval forward.
        assert all(n.startswith(("aux1.", "aux2.", "AuxLogits.")) for n in unused), name
        assert sum(p.numel() for p in model.parameters()) == get_entry(name)["num_params"]
