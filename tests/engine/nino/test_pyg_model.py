"""NiNo reads PyG ``Data`` and its layers are PyG message-passing layers, with unchanged results.

Needs the published checkpoints and the golden FM/16 file from the shared directory (see
``test_model.py``); skipped with the reason when they are absent.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch_geometric.nn import MessagePassing

from tests.engine.nino.published import require_checkpoint
from workers.graphs.params.graph import ParamGraph, build_param_graph, params_from_features
from workers.nino import NiNoModel, load_model
from workers.nino.layers import EdgeUpdate, FiLMConv
from workers.zoo.build import build_model

ATOL = 2e-5  # the float32 agreement test_model.py holds the model to


@pytest.fixture(scope="module")
def fm16_data(golden: dict[str, Any]):
    """Our FM/16 graph as a Data, with the reference's edge features and encodings."""
    graph = build_param_graph(build_model("cnn"))
    return graph.to_pyg(edge_attr=golden["edge_attr_in"], lpe=golden["graph"]["lpe"])


def test_nino_nowcasts_fm16_from_a_pyg_data_exactly_as_the_reference(nino, golden, fm16_data):
    out = nino.predict_pyg(fm16_data, k=40)
    assert (out - golden["model_out_k40"]).abs().max().item() < ATOL
    params = params_from_features(ParamGraph.from_pyg(fm16_data), out)
    flat = torch.cat([p.reshape(-1) for p in params.values()])
    assert (flat - golden["pred_flat_scaled"][40]).abs().max().item() < ATOL


def test_data_and_tensor_inputs_give_identical_predictions_and_forward_passes(nino, fm16_data):
    d = fm16_data
    tensors = (d.edge_index, d.edge_type, d.edge_attr, d.lpe)
    assert torch.equal(
        nino.predict_pyg(d, k=3, edge_chunk=500), nino.predict(*tensors, 3, edge_chunk=500)
    )
    with torch.no_grad():
        assert torch.equal(nino.forward_pyg(d), nino(*tensors))


def test_a_data_without_encodings_is_refused_by_nino_but_enough_for_wnn_plus(nino, golden):
    graph = build_param_graph(build_model("cnn"))
    data = graph.to_pyg(edge_attr=golden["edge_attr_in"])
    with pytest.raises(ValueError, match="no lpe"):
        nino.predict_pyg(data, k=1)
    require_checkpoint("nino_mlp")
    wnn = load_model("nino_mlp")
    out = wnn.predict_pyg(data, k=1)
    tensors = (data.edge_index, data.edge_type, data.edge_attr)
    assert torch.equal(out, wnn.predict(*tensors, None, 1))


def test_nino_graph_layers_are_pyg_message_passing_layers_and_keep_the_published_names(nino):
    assert all(isinstance(conv, FiLMConv) for conv in nino.gnn.convs)
    assert all(isinstance(update, EdgeUpdate) for update in nino.gnn.edge_update)
    assert all(isinstance(m, MessagePassing) for m in (*nino.gnn.convs, *nino.gnn.edge_update))
    # The aggregation module PyG adds holds no state, so the checkpoint keys are unchanged.
    fresh = NiNoModel(nino.config)
    assert fresh.state_dict().keys() == nino.state_dict().keys()


def test_the_streamed_message_pieces_equal_a_pyg_propagate(nino, fm16_data):
    # predict() sums conv.messages_from_terms chunk by chunk; on a whole graph, that mean and
    # update must be what PyG's propagate gives.
    torch.manual_seed(0)
    conv = nino.gnn.convs[0]
    x = torch.randn(fm16_data.num_nodes, conv.hid)
    e = torch.randn(fm16_data.num_edges, conv.hid)
    src, dst = fm16_data.edge_index
    with torch.no_grad():
        messages = conv.messages_from_terms(e, src, dst, conv.node_terms(x))
        total = torch.zeros_like(x).index_add_(0, dst, messages)
        mean = total / torch.bincount(dst, minlength=len(x)).clamp(min=1).unsqueeze(1)
        assert torch.allclose(conv.update(mean, x), conv(x, fm16_data.edge_index, e), atol=1e-5)
