"""Both graph kinds go out as PyG ``Data`` and come back unchanged."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from tests.engine.graphs.test_param_graph import SMALL_ARGS  # the same small models
from workers.graphs.arch.graph import ArchGraph, architecture_graph
from workers.graphs.params.graph import (
    ParamGraph,
    build_param_graph,
    graph_features,
    params_from_features,
)
from workers.zoo.build import build_model, example_input


def _assert_same_param_graph(a: ParamGraph, b: ParamGraph) -> None:
    assert torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.edge_type, b.edge_type)
    assert (a.num_nodes, a.num_param_edges) == (b.num_nodes, b.num_param_edges)
    assert a.segments == b.segments and isinstance(b.segments, tuple)
    assert a.param_shapes == b.param_shapes
    assert all(isinstance(shape, torch.Size) for shape in b.param_shapes.values())


def _assert_same_arch_graph(a: ArchGraph, b: ArchGraph) -> None:
    assert a.nodes == b.nodes
    assert torch.equal(a.edges, b.edges) and torch.equal(a.distances, b.distances)
    assert a.max_distance == b.max_distance
    assert (a.unknown_ops, a.not_covered) == (b.unknown_ops, b.not_covered)


# -- parameter graphs ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(SMALL_ARGS))
def test_a_param_graph_goes_to_pyg_data_and_back_unchanged(family):
    graph = build_param_graph(build_model(family, SMALL_ARGS[family], device="meta"))
    data = graph.to_pyg()
    assert isinstance(data, Data)
    assert (data.num_nodes, data.num_edges) == (graph.num_nodes, graph.num_edges)
    _assert_same_param_graph(graph, ParamGraph.from_pyg(data))


def test_a_param_graph_survives_pyg_device_moves_clones_and_pickling():
    import pickle

    graph = build_param_graph(build_model("cnn_residual", SMALL_ARGS["cnn_residual"]))
    for data in (
        graph.to_pyg().to("cpu"),
        graph.to_pyg().clone(),
        pickle.loads(pickle.dumps(graph.to_pyg())),
    ):
        _assert_same_param_graph(graph, ParamGraph.from_pyg(data))


def test_pyg_data_carries_what_nino_reads_and_maps_back_to_the_parameters():
    model = build_model("transformer", SMALL_ARGS["transformer"])
    graph = build_param_graph(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    features = graph_features(graph, [params] * 5)
    data = graph.to_pyg(edge_attr=features, lpe=graph.lpe(8))
    assert data.edge_attr.shape == (graph.num_edges, 45) and data.lpe.shape == (graph.num_nodes, 8)
    back = ParamGraph.from_pyg(data)
    assert back.lpe(8) is data.lpe  # the encodings travel with the Data, nothing is recomputed
    restored = params_from_features(back, data.edge_attr)
    assert all(torch.equal(restored[n], params[n]) for n in params)


def test_features_or_encodings_of_the_wrong_size_are_refused():
    graph = build_param_graph(build_model("mlp", SMALL_ARGS["mlp"]))
    with pytest.raises(ValueError, match="edges"):
        graph.to_pyg(edge_attr=torch.zeros(graph.num_edges - 1, 45))
    with pytest.raises(ValueError, match="nodes"):
        graph.to_pyg(lpe=torch.zeros(graph.num_nodes + 1, 8))


def test_a_data_without_the_parameter_layout_is_not_a_param_graph():
    graph = build_param_graph(build_model("mlp", SMALL_ARGS["mlp"]))
    plain = Data(edge_index=graph.edge_index, edge_type=graph.edge_type, num_nodes=graph.num_nodes)
    with pytest.raises(ValueError, match="param_layout"):
        ParamGraph.from_pyg(plain)


# -- architecture graphs ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["cnn_residual", "transformer", "llama"])
def test_an_arch_graph_goes_to_pyg_data_and_back_unchanged(family):
    model = build_model(family, SMALL_ARGS[family], device="meta")
    graph = architecture_graph(model, example_input(family, SMALL_ARGS[family], device="meta"))
    data = graph.to_pyg()
    assert isinstance(data, Data)
    assert data.num_nodes == graph.n_nodes and data.num_edges == len(graph.edges)
    assert torch.equal(data.primitive, graph.primitive_idx())
    _assert_same_arch_graph(graph, ArchGraph.from_pyg(data))
    _assert_same_arch_graph(graph, ArchGraph.from_pyg(data.to("cpu")))


def test_arch_graph_data_batches_with_the_distance_pairs_offset_like_the_edges():
    graphs = [
        architecture_graph(build_model("mlp", SMALL_ARGS["mlp"]), torch.randn(2, 12)),
        architecture_graph(build_model("cnn", SMALL_ARGS["cnn"]), torch.randn(2, 2, 28, 28)),
    ]
    batch = Batch.from_data_list([g.to_pyg() for g in graphs])
    first = graphs[0].n_nodes
    assert batch.num_nodes == first + graphs[1].n_nodes
    tail = batch.distance_index[:, len(graphs[0].distances) :]
    assert torch.equal(tail, graphs[1].distances[:, :2].T + first)
    assert torch.equal(ArchGraph.from_pyg(batch.get_example(1)).distances, graphs[1].distances)
    with pytest.raises(ValueError, match="several graphs"):
        ArchGraph.from_pyg(batch)


def test_a_batch_of_param_graphs_is_converted_back_one_example_at_a_time():
    graphs = [build_param_graph(build_model(f, SMALL_ARGS[f])) for f in ("mlp", "cnn")]
    batch = Batch.from_data_list([g.to_pyg() for g in graphs])
    assert batch.num_nodes == sum(g.num_nodes for g in graphs)
    with pytest.raises(ValueError, match="several graphs"):
        ParamGraph.from_pyg(batch)
    _assert_same_param_graph(graphs[1], ParamGraph.from_pyg(batch.get_example(1)))


def test_a_data_without_arch_nodes_is_not_an_arch_graph():
    with pytest.raises(ValueError, match="arch_nodes"):
        ArchGraph.from_pyg(Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=1))
