"""The graph viewer's document (webapp/architectures/graphview.py) and its owner-only URL."""

from __future__ import annotations

import json

from tests.factories import queued_job, zoo_architecture
from tests.paths import bench_module
from webapp.architectures.graphview import (
    default_depth,
    ghn_label,
    module_label,
    param_blocks,
    viewer_document,
)

generated_graph = bench_module("graph_layout").generated_graph


def node(id_, name, type_, op="module", params=(), **extra):
    return {"id": id_, "name": name, "op": op, "type": type_,
            "params": [{"name": n, "shape": s} for n, s in params], **extra}  # fmt: skip


def test_nodes_are_named_by_operation_and_shape_not_by_a_cut_parameter_name():
    conv = node(1, "conv1", "Conv2d", params=[("conv1.weight", [64, 3, 7, 7])])
    bn = node(2, "bn1", "BatchNorm2d", params=[("bn1.weight", [64]), ("bn1.bias", [64])])
    attention = node(
        3, "layer.self_attention", "MultiheadAttention",
        params=[("x.in_proj_weight", [2304, 768])], attrs={"num_heads": 12},
    )  # fmt: skip
    assert module_label(conv) == "Conv 64×3×7×7"
    assert module_label(bn) == "BatchNorm 64"
    assert module_label(attention) == "MultiheadAttention ×12 heads"
    assert module_label(node(4, "fc", "Linear", params=[("fc.weight", [1000, 512])])) == (
        "Linear 1000×512"
    )
    assert module_label(node(5, "add_3", "add", op="function")) == "Add"
    assert module_label(node(6, "cat", "cat", op="function")) == "Concat"
    assert module_label(node(0, "x", "input", op="input", out_shape=[2, 3, 224, 224])) == (
        "Input 3×224×224"
    )
    assert ghn_label({"type": "conv", "params": [["conv1.weight", [64, 3, 7, 7]]]}) == (
        "conv 64×3×7×7"
    )


def residual_block() -> dict:
    """x → conv → bn → add ← (x through a downsample conv), then an identity skip."""
    nodes = [
        node(0, "x", "input", op="input"),
        node(1, "block.0.conv", "Conv2d"),
        node(2, "block.0.bn", "BatchNorm2d"),
        node(3, "block.0.downsample", "Conv2d"),
        node(4, "add", "add", op="function", module="block.0"),
        node(5, "block.1.conv", "Conv2d"),
        node(6, "block.1.bn", "BatchNorm2d"),
        node(7, "add_1", "add", op="function", module="block.1"),
        node(8, "output", "output", op="output"),
    ]
    edges = [[0, 1], [1, 2], [2, 4], [0, 3], [3, 4], [4, 5], [5, 6], [6, 7], [4, 7], [7, 8]]
    return {"nodes": nodes, "edges": edges}


def test_shortcut_edges_are_told_apart_from_the_main_path():
    view = viewer_document({"graph.json": residual_block()})["views"]["module"]
    kinds = {(s, d): kind for s, d, kind in view["edges"]}
    assert kinds[(4, 7)] == "skip"  # the identity shortcut jumps over conv and bn
    assert kinds[(0, 3)] == kinds[(3, 4)] == "branch"  # the downsample side path
    assert kinds[(1, 2)] == kinds[(6, 7)] == "main"
    # A residual add belongs to the block whose forward called it, so it folds with it.
    assert [n["group"] for n in view["nodes"] if n["kind"] == "function"] == ["block.0", "block.1"]


def test_big_graphs_open_folded_and_small_ones_unfolded():
    assert viewer_document({"graph.json": residual_block()})["views"]["module"]["depth"] is None
    big = viewer_document({"graph.json": generated_graph(10_000)})["views"]["module"]
    assert len(big["nodes"]) == 9_987
    assert big["depth"] == 3  # one box per decoder layer: "model.layers.<i>"
    assert default_depth(big["nodes"], limit=10) == 2  # "model.layers" as one box


def test_the_fm16_cnn_parameter_graph_becomes_per_layer_blocks_of_neurons():
    from workers.pipelines.inspect import ModelSpec, inspect_model

    summary = inspect_model(ModelSpec(source="zoo", name="cnn")).param_graph
    blocks = param_blocks(summary)
    assert [b["layer"] for b in blocks] == [
        "input", "features.0", "features.2", "features.4", "classifier",
    ]  # fmt: skip
    assert [b["neurons"] for b in blocks] == [1, 16, 32, 32, 10]
    assert [b["edges"] for b in blocks] == [0, 32, 544, 1056, 330]
    bias_nodes = [b["bias"] for b in blocks[1:]]
    assert len(set(bias_nodes)) == 4
    drawn = sum(b["neurons"] for b in blocks) + len(bias_nodes)
    assert drawn == summary["nodes"] == 95
    # Counts only when the edges are not listed (large models).
    counted = param_blocks({**summary, "edges_listed": False, "edge_list": None})
    assert counted[0]["layer"] == "features.0" and counted[0]["neurons"] is None


def _inspected(owner):
    architecture = zoo_architecture(owner, "cnn")
    job = queued_job(owner, architecture)
    job.claim("w")
    job.save_artifact("graph", "graph.json", json.dumps(residual_block()).encode(), "x/json")
    job.succeed("ok")
    return architecture


def test_the_owner_gets_the_viewer_document(browser, owner):
    architecture = _inspected(owner)
    document = browser.get(f"/architectures/{architecture.pk}/viewer.json").json()
    assert document["default_view"] == "module"
    assert document["architecture"]["id"] == architecture.pk
    assert len(document["views"]["module"]["nodes"]) == 9


def test_the_viewer_document_is_404_for_an_outsider(outsider_browser, owner):
    architecture = _inspected(owner)
    response = outsider_browser.get(f"/architectures/{architecture.pk}/viewer.json")
    assert response.status_code == 404


def test_the_viewer_document_is_404_before_any_inspection(browser, owner):
    architecture = zoo_architecture(owner, "cnn")
    assert browser.get(f"/architectures/{architecture.pk}/viewer.json").status_code == 404
