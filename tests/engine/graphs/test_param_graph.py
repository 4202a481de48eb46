"""The parameter graph NiNo reads: golden FM/16 graph, round trips, structure, symmetries, LPE."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch_geometric.nn import MessagePassing

from workers.errors import ModelError
from workers.graphs.params import lpe as lpe_module
from workers.graphs.params.graph import (
    EDGE_TYPES,
    ParamGraph,
    build_param_graph,
    graph_features,
    params_from_features,
)
from workers.graphs.params.lpe import laplacian_pe, normalized_laplacian, structure_key
from workers.zoo.build import build_model

GOLDEN = Path(__file__).resolve().parents[3].parent / "shared" / "golden" / "golden_nino_fm16.pt"

SMALL_ARGS = {
    "mlp": {"in_features": 12, "hidden": [7, 5], "num_classes": 3},
    "cnn": {"in_channels": 2, "channels": [4, 6], "num_classes": 3},
    "cnn_residual": {"in_channels": 2, "width": 4, "num_blocks": 2, "num_classes": 3},
    "transformer": {"vocab_size": 11, "context": 6, "d_model": 8, "n_layers": 2, "n_heads": 2},
    "llama": {
        "vocab_size": 11,
        "context": 6,
        "d_model": 8,
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": 2,
        "mlp_hidden": 10,
    },
}


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN.exists():
        pytest.skip(f"golden NiNo data not found at {GOLDEN} (shared folder absent)")
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def fm16() -> tuple[nn.Module, ParamGraph]:
    model = build_model("cnn")
    return model, build_param_graph(model)


def _golden_states(golden: dict, graph: ParamGraph) -> list[dict[str, torch.Tensor]]:
    """The golden scaled context, re-keyed from the reference's names to ours (same order)."""
    flat = golden["states_flat_scaled"]
    states = []
    for t in range(flat.shape[1]):
        state, offset = {}, 0
        for ours, theirs in zip(graph.param_shapes, golden["param_names"], strict=True):
            shape = tuple(golden["param_shapes"][theirs].tolist())
            n = int(torch.Size(shape).numel())
            state[ours] = flat[offset : offset + n, t].reshape(shape)
            offset += n
        states.append(state)
    return states


def _random_states(model: nn.Module, count: int) -> list[dict[str, torch.Tensor]]:
    return [{n: torch.randn_like(p) for n, p in model.named_parameters()} for _ in range(count)]


# -- the golden FM/16 graph -----------------------------------------------------------------


def test_fm16_graph_equals_the_reference_graph_node_for_node_and_edge_for_edge(golden, fm16):
    _, graph = fm16
    ref = golden["graph"]
    assert graph.num_nodes == ref["num_nodes"] == 95
    assert graph.num_edges == 2057
    assert torch.equal(graph.edge_index, ref["edge_index"])
    assert torch.equal(graph.edge_type, ref["edge_type"])


def test_fm16_parameter_blocks_match_the_reference_edge_ranges(golden, fm16):
    _, graph = fm16
    ours = list(graph.edge_ranges.values())
    theirs = [tuple(golden["edge_ranges"][n].tolist()) for n in golden["param_names"]]
    assert ours == theirs
    assert graph.num_param_edges == 1962
    assert graph.aux_mask.sum() == 95  # only self-loops: FM/16 has no residual/head edges
    data = graph.to_pyg(lpe=golden["graph"]["lpe"])
    assert data.num_nodes == 95 and data.num_edges == 2057 and data.lpe.shape == (95, 8)


def test_fm16_edge_features_equal_the_reference_model_input_bit_for_bit(golden, fm16):
    _, graph = fm16
    features = graph_features(graph, _golden_states(golden, graph))
    assert features.shape == (2057, 45)
    assert torch.equal(features, golden["edge_attr_in"])


def test_fm16_prediction_reads_back_to_the_reference_parameter_vector(golden, fm16):
    _, graph = fm16
    params = params_from_features(graph, golden["model_out_k40"])
    flat = torch.cat([p.reshape(-1) for p in params.values()])
    assert torch.equal(flat, golden["pred_flat_scaled"][40])


def test_fm16_lpe_equals_the_reference_up_to_sign_and_degenerate_eigenspaces(golden, fm16):
    _, graph = fm16
    ours, theirs = graph.lpe(), golden["graph"]["lpe"]
    assert ours.shape == theirs.shape == (95, 8) and ours.dtype == torch.float32
    row, col, val = normalized_laplacian(graph.edge_index, graph.num_nodes)
    lap = torch.zeros(95, 95).index_put_((row, col), val, accumulate=True)
    # Same eigenvalue for every column (Rayleigh quotients of unit eigenvectors).
    eig_ours = torch.diag(ours.T @ lap @ ours)
    eig_theirs = torch.diag(theirs.T @ lap @ theirs)
    assert torch.allclose(eig_ours, eig_theirs, atol=1e-5)
    # Both are eigenvectors of L: L v = lambda v.
    for pe, eig in ((ours, eig_ours), (theirs, eig_theirs)):
        assert torch.allclose(lap @ pe, pe * eig, atol=1e-5)
    # Simple eigenvalues have a unique eigenvector up to sign: those columns agree.
    simple = [j for j in range(8) if (eig_ours - eig_ours[j]).abs().lt(1e-4).sum() == 1]
    assert len(simple) >= 3
    for j in simple:
        assert torch.allclose(ours[:, j].abs(), theirs[:, j].abs(), atol=1e-6)


# -- round trips and structure ----------------------------------------------------------------


@pytest.mark.parametrize("family", list(SMALL_ARGS))
def test_parameters_survive_features_and_back_bit_exactly(family):
    torch.manual_seed(0)
    model = build_model(family, SMALL_ARGS[family])
    graph = build_param_graph(model)
    states = _random_states(model, 3)
    features = graph_features(graph, states)
    assert features.shape == (graph.num_edges, 9 * 3)
    for t, state in enumerate(states):
        back = params_from_features(graph, features, state=t)
        assert list(back) == [n for n, _ in model.named_parameters()]
        for name, value in state.items():
            assert torch.equal(back[name], value), name
    single = graph_features(graph, dict(model.named_parameters()))
    assert single.shape == (graph.num_edges, 9)
    for name, value in params_from_features(graph, single).items():
        assert torch.equal(value, dict(model.named_parameters())[name].detach())


@pytest.mark.parametrize("family", list(SMALL_ARGS))
def test_every_parameter_element_has_its_own_edge_position(family):
    model = build_model(family, SMALL_ARGS[family])
    graph = build_param_graph(model)
    features = graph_features(graph, dict(model.named_parameters()))
    seen = []
    for name, param in model.named_parameters():
        index = graph.element_index(name)
        assert torch.equal(features.view(-1)[index], param.detach().reshape(-1))
        seen.append(index)
    seen = torch.cat(seen)
    assert len(torch.unique(seen)) == len(seen) == sum(p.numel() for p in model.parameters())
    assert seen.max() < graph.num_param_edges * 9  # parameters never sit on auxiliary edges


@pytest.mark.parametrize("family", list(SMALL_ARGS))
def test_auxiliary_edges_carry_constants_and_self_loops_close_the_edge_list(family):
    model = build_model(family, SMALL_ARGS[family])
    graph = build_param_graph(model)
    features = graph_features(graph, [dict(model.named_parameters())] * 2)
    loops = graph.edge_index[:, -graph.num_nodes :]
    assert torch.equal(loops[0], torch.arange(graph.num_nodes))
    assert torch.equal(loops[1], torch.arange(graph.num_nodes))
    assert (graph.edge_type[-graph.num_nodes :] == EDGE_TYPES["self_loop"]).all()
    assert (features[-graph.num_nodes :, :2] == 2.0).all()
    aux = graph.aux_mask.clone()
    aux[-graph.num_nodes :] = False
    assert (features[aux, :2] == 1.0).all() and (features[graph.aux_mask, 2:] == 0).all()
    assert set(graph.edge_type[aux].tolist()) <= {EDGE_TYPES["residual"], EDGE_TYPES["head"]}


def test_a_meta_model_gives_the_same_graph_as_a_real_one():
    real = build_param_graph(build_model("llama", SMALL_ARGS["llama"]))
    meta = build_param_graph(build_model("llama", SMALL_ARGS["llama"], device="meta"))
    assert torch.equal(real.edge_index, meta.edge_index)
    assert torch.equal(real.edge_type, meta.edge_type)
    assert real.segments == meta.segments


def test_mlp_has_one_edge_per_weight_and_a_node_per_neuron_and_bias():
    graph = build_param_graph(build_model("mlp", SMALL_ARGS["mlp"]))
    assert graph.num_param_edges == 12 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    assert graph.num_nodes == 12 + (1 + 7) + (1 + 5) + (1 + 3)
    counts = torch.bincount(graph.edge_type, minlength=15)
    assert counts[EDGE_TYPES["linear"]] == 12 * 7 + 7 * 5 + 5 * 3
    assert counts[EDGE_TYPES["bias"]] == 7 + 5 + 3


def test_conv_kernels_fill_nine_positions_and_one_by_one_kernels_only_the_first():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 1), nn.Flatten(1))
    graph = build_param_graph(model)
    features = graph_features(graph, dict(model.named_parameters()))
    first = features[:6]  # in 0 -> out 0..2, in 1 -> out 0..2
    assert torch.equal(first[1], model[0].weight[1, 0].detach().reshape(9))
    one_by_one = features[slice(*graph.edge_ranges["2.weight"])]
    assert (one_by_one[:, 1:] == 0).all()
    assert (graph.edge_type[slice(*graph.edge_ranges["2.weight"])] == EDGE_TYPES["conv"]).all()


def test_residual_cnn_joins_block_inputs_to_block_outputs_one_to_one():
    graph = build_param_graph(build_model("cnn_residual", SMALL_ARGS["cnn_residual"]))
    residual = graph.edge_type == EDGE_TYPES["residual"]
    assert residual.sum() == 2 * 4  # two blocks of width 4
    src, dst = graph.edge_index[:, residual]
    stem_out = graph.edge_index[1, slice(*graph.edge_ranges["stem.bias"])]
    assert torch.equal(src[:4], stem_out)
    block_out = graph.edge_index[1, slice(*graph.edge_ranges["blocks.0.conv2.bias"])]
    assert torch.equal(dst[:4], block_out) and torch.equal(src[4:], block_out)


def test_transformer_graph_splits_qkv_transposes_keys_and_adds_heads_and_residuals():
    args = SMALL_ARGS["transformer"]
    model = build_model("transformer", args)
    graph = build_param_graph(model)
    d, n_heads = args["d_model"], args["n_heads"]
    types = graph.edge_type
    counts = torch.bincount(types, minlength=15)
    per_layer = d * d
    assert counts[EDGE_TYPES["query"]] == counts[EDGE_TYPES["key"]] == 2 * per_layer
    assert counts[EDGE_TYPES["value"]] == 2 * per_layer
    assert counts[EDGE_TYPES["token_embedding"]] == args["vocab_size"] * d
    assert counts[EDGE_TYPES["position_embedding"]] == args["context"] * d
    assert counts[EDGE_TYPES["head"]] == 2 * (2 * d)  # each head to its q and v neurons
    assert counts[EDGE_TYPES["residual"]] == 2 * (2 * d)
    assert counts[EDGE_TYPES["norm"]] == 5 * d  # ln1, ln2 per block and ln_f
    assert graph.num_param_edges == sum(p.numel() for p in model.parameters())

    start, _ = graph.edge_ranges["blocks.0.attn.qkv.weight"]
    q = graph.edge_index[:, start : start + d * d]
    k = graph.edge_index[:, start + d * d : start + 2 * d * d]
    assert torch.equal(k, q.flip(0))  # key edges: query neuron -> block input
    heads = graph.edge_index[:, types == EDGE_TYPES["head"]][:, : 2 * d]
    query_neurons = q[1, :d]
    assert torch.equal(heads[1, :d], query_neurons)
    assert len(torch.unique(heads[0])) == n_heads
    # Three bias nodes: query bias -> query neurons, key bias -> block input, value bias -> value.
    b_start, b_end = graph.edge_ranges["blocks.0.attn.qkv.bias"]
    bias = graph.edge_index[:, b_start:b_end]
    assert len(torch.unique(bias[0])) == 3
    assert torch.equal(bias[1, :d], query_neurons)
    assert torch.equal(bias[1, d : 2 * d], q[0, ::d])  # the block's input neurons
    assert torch.equal(
        bias[1, 2 * d :], graph.edge_index[1, start + 2 * d * d : start + 2 * d * d + d]
    )


def test_gpt2_sized_transformer_has_the_reference_node_count_plus_its_untied_head():
    # The reference's 3-layer d=64 GPT-2 (tied head, 4 heads) has 52,925 nodes; our family
    # unties the head, which adds one node per vocabulary entry.
    args = {"vocab_size": 50257, "context": 1024, "d_model": 64, "n_layers": 3, "n_heads": 4}
    graph = build_param_graph(build_model("transformer", args, device="meta"))
    assert graph.num_nodes == 52_925 + 50_257


def test_llama_graph_shares_kv_heads_across_query_groups():
    args = SMALL_ARGS["llama"]
    model = build_model("llama", args)
    graph = build_param_graph(model)
    assert graph.num_param_edges == sum(p.numel() for p in model.parameters())
    q_start, _ = graph.edge_ranges["layers.0.self_attn.q_proj.weight"]
    query_neurons = graph.edge_index[1, q_start : q_start + 8]
    k_start, k_end = graph.edge_ranges["layers.0.self_attn.k_proj.weight"]
    key_sources = graph.edge_index[0, k_start : k_start + 4]  # block input 0 -> 4 key rows
    # kv head g pairs with query head g * group: key rows 0,1 -> q 0,1; rows 2,3 -> q 4,5
    assert torch.equal(key_sources, query_neurons[[0, 1, 4, 5]])
    assert (graph.edge_type[k_start:k_end] == EDGE_TYPES["key"]).all()
    gate = slice(*graph.edge_ranges["layers.0.mlp.gate_proj.weight"])
    up = slice(*graph.edge_ranges["layers.0.mlp.up_proj.weight"])
    assert torch.equal(graph.edge_index[:, gate], graph.edge_index[:, up])


# -- what the graph refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "left"),
    [
        (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), []),
        (nn.Sequential(nn.Conv2d(3, 4, 5)), ["0.weight"]),  # 25 positions: base optimizer
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 2)), []),
        (nn.Sequential(nn.Linear(3, 3), nn.PReLU()), ["1.weight"]),
    ],
)
def test_layers_a_chain_could_not_hold_are_read_from_the_traced_data_flow(model, left):
    # Grouped convolutions, 5x5 kernels and flattened feature maps once refused the model;
    # the traced builder places them, and leaves to the base optimizer what it should not
    # nowcast (kernels above 3x3) or cannot place (PReLU slopes).
    graph = build_param_graph(model)
    assert [name for name, _, _ in graph.left] == left
    assert graph.coverage()["total"] == sum(p.numel() for p in model.parameters())


def test_a_layer_called_the_wrong_way_is_refused_naming_the_failing_call():
    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    with pytest.raises(ModelError, match="Could not run the model.*missing"):
        build_param_graph(model)


def test_resnet18_is_read_with_its_7x7_stem_left_to_the_base_optimizer():
    model = build_model("resnet18", device="meta")
    graph = build_param_graph(model)
    assert [name for name, _, _ in graph.left] == ["conv1.weight"]


def test_torchvision_residual_blocks_get_their_skip_from_the_traced_forward():
    block = torchvision.models.resnet.BasicBlock(4, 4)
    graph = build_param_graph(nn.Sequential(nn.Conv2d(1, 4, 3), block), torch.zeros(1, 1, 8, 8))
    assert int((graph.edge_type == EDGE_TYPES["residual"]).sum()) == 4


def test_tied_parameters_are_refused():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    with pytest.raises(ModelError, match="shared"):
        build_param_graph(nn.Sequential(first, second))


def test_batchnorm_becomes_norm_nodes_like_layernorm():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
    graph = build_param_graph(model)
    # input 1, bias + 4, bn weight + bn bias, bias + 2
    assert graph.num_nodes == 1 + 5 + 2 + 3
    norm = slice(*graph.edge_ranges["1.weight"])
    assert (graph.edge_type[norm] == EDGE_TYPES["norm"]).all()
    conv_out = graph.edge_index[1, slice(*graph.edge_ranges["0.bias"])]
    assert torch.equal(graph.edge_index[1, norm], conv_out)
    features = graph_features(graph, dict(model.named_parameters()))
    for name, value in params_from_features(graph, features).items():
        assert torch.equal(value, dict(model.named_parameters())[name].detach())


# -- symmetries (§3) --------------------------------------------------------------------------


def _layer_neurons(graph: ParamGraph, weight_name: str) -> torch.Tensor:
    """Output neurons of a layer: the targets of the edges leaving its first input."""
    seg = next(s for s in graph.segments if s.name == weight_name)
    return graph.edge_index[1, seg.edge_start : seg.edge_start + seg.n_dst]


def _edge_list(graph: ParamGraph, features: torch.Tensor, relabel: torch.Tensor | None = None):
    src, dst = graph.edge_index
    if relabel is not None:
        src, dst = relabel[src], relabel[dst]
    rows = zip(src.tolist(), dst.tolist(), graph.edge_type.tolist(), features.tolist(), strict=True)
    return sorted((s, d, t, tuple(f)) for s, d, t, f in rows)


def _permute_hidden(model: nn.Module, first: nn.Module, second: nn.Module, perm: torch.Tensor):
    with torch.no_grad():
        first.weight.copy_(first.weight[perm])
        first.bias.copy_(first.bias[perm])
        second.weight.copy_(second.weight[:, perm])


def _identity_relabel(graph: ParamGraph) -> torch.Tensor:
    return torch.arange(graph.num_nodes)


@pytest.mark.parametrize(
    ("family", "first", "second", "x_shape"),
    [
        ("mlp", "layers.0", "layers.2", (3, 12)),
        ("cnn", "features.0", "features.2", (3, 2, 9, 9)),
    ],
)
def test_permuting_hidden_neurons_keeps_outputs_and_gives_an_isomorphic_graph(
    family, first, second, x_shape
):
    torch.manual_seed(1)
    model = build_model(family, SMALL_ARGS[family])
    x = torch.randn(x_shape)
    before = model(x)
    graph = build_param_graph(model)
    features = graph_features(graph, dict(model.named_parameters()))

    modules = dict(model.named_modules())
    width = modules[first].weight.shape[0]
    perm = torch.randperm(width)
    _permute_hidden(model, modules[first], modules[second], perm)
    assert torch.allclose(model(x), before, atol=1e-6)

    permuted = graph_features(graph, dict(model.named_parameters()))
    assert not torch.equal(permuted, features)
    # Neuron j of the permuted model is neuron perm[j] of the original one.
    neurons = _layer_neurons(graph, f"{first}.weight")
    relabel = _identity_relabel(graph)
    relabel[neurons[perm]] = neurons
    assert _edge_list(graph, features, relabel) == _edge_list(graph, permuted)


def _out_signatures(graph, features, nodes):
    src = graph.edge_index[0]
    return [sorted(map(tuple, features[(src == n)].tolist())) for n in nodes.tolist()]


def _in_signatures(graph, features, nodes):
    dst = graph.edge_index[1]
    return [sorted(map(tuple, features[(dst == n)].tolist())) for n in nodes.tolist()]


def test_permuting_input_or_output_neurons_breaks_the_isomorphism():
    # Input and output neurons have fixed meaning, so an admissible relabelling keeps them in
    # place. It then maps each input's outgoing edges (and each output's incoming edges) onto
    # the same node's: these multisets are invariants. Hidden permutations keep them; input
    # or output permutations change them, so no admissible relabelling exists.
    torch.manual_seed(2)
    model = build_model("mlp", SMALL_ARGS["mlp"])
    graph = build_param_graph(model)
    inputs = torch.arange(12)
    outputs = _layer_neurons(graph, "layers.4.weight")

    def invariants(m):
        feats = graph_features(graph, dict(m.named_parameters()))
        return _out_signatures(graph, feats, inputs), _in_signatures(graph, feats, outputs)

    base = invariants(model)
    hidden = build_model("mlp", SMALL_ARGS["mlp"])
    hidden.load_state_dict(model.state_dict())
    _permute_hidden(hidden, hidden.layers[0], hidden.layers[2], torch.randperm(7))
    assert invariants(hidden) == base

    swapped_inputs = build_model("mlp", SMALL_ARGS["mlp"])
    swapped_inputs.load_state_dict(model.state_dict())
    with torch.no_grad():
        swapped_inputs.layers[0].weight.copy_(model.layers[0].weight[:, torch.roll(inputs, 1)])
    assert invariants(swapped_inputs)[0] != base[0]

    swapped_outputs = build_model("mlp", SMALL_ARGS["mlp"])
    swapped_outputs.load_state_dict(model.state_dict())
    with torch.no_grad():
        order = torch.tensor([1, 2, 0])
        swapped_outputs.layers[4].weight.copy_(model.layers[4].weight[order])
        swapped_outputs.layers[4].bias.copy_(model.layers[4].bias[order])
    assert invariants(swapped_outputs)[1] != base[1]


class _TinyEdgeGNN(MessagePassing):
    """One message-passing layer reading node and edge features (mean aggregation)."""

    def __init__(self, dim: int, edge_dim: int) -> None:
        super().__init__(aggr="mean")
        self.message_mlp = nn.Linear(2 * dim + edge_dim, dim)
        self.update_mlp = nn.Linear(2 * dim, dim)

    def forward(self, x, edge_index, edge_attr):
        aggregated = self.propagate(edge_index, x=x, edge_attr=edge_attr)
        return self.update_mlp(torch.cat([x, aggregated], dim=-1))

    def message(self, x_i, x_j, edge_attr):
        return torch.tanh(self.message_mlp(torch.cat([x_i, x_j, edge_attr], dim=-1)))


def test_a_message_passing_layer_is_equivariant_to_neuron_permutations():
    torch.manual_seed(3)
    model = build_model("mlp", SMALL_ARGS["mlp"]).double()
    graph = build_param_graph(model)
    features = graph_features(graph, dict(model.named_parameters()))
    gnn = _TinyEdgeGNN(4, 9).double()
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64)

    node_perm = torch.randperm(graph.num_nodes)  # old node n becomes node_perm[n]
    edge_perm = torch.randperm(graph.num_edges)
    x_new = torch.empty_like(x)
    x_new[node_perm] = x
    edge_index_new = node_perm[graph.edge_index][:, edge_perm]
    with torch.no_grad():
        out = gnn(x, graph.edge_index, features)
        out_new = gnn(x_new, edge_index_new, features[edge_perm])
    assert torch.allclose(out_new[node_perm], out, atol=1e-12)


# -- Laplacian positional encodings -------------------------------------------------------------


def test_lpe_is_cached_per_structure_in_memory_and_on_disk(tmp_path, monkeypatch):
    graph = build_param_graph(build_model("mlp", SMALL_ARGS["mlp"]))
    monkeypatch.setattr(lpe_module, "_CACHE", {})
    first = laplacian_pe(graph.edge_index, graph.num_nodes, 8, cache_dir=tmp_path)
    assert laplacian_pe(graph.edge_index, graph.num_nodes, 8) is first
    files = list(tmp_path.glob("lpe-*.pt"))
    assert len(files) == 1 and structure_key(graph.edge_index, graph.num_nodes) in files[0].name
    monkeypatch.setattr(lpe_module, "_CACHE", {})
    again = laplacian_pe(graph.edge_index, graph.num_nodes, 8, cache_dir=tmp_path)
    assert torch.equal(again, first)
    other = build_param_graph(build_model("mlp", {**SMALL_ARGS["mlp"], "hidden": [7, 6]}))
    assert structure_key(other.edge_index, other.num_nodes) != files[0].name[4:-5]


def test_lpe_of_a_large_graph_uses_the_sparse_solver_and_fixes_signs():
    graph = build_param_graph(
        build_model("mlp", {"in_features": 60, "hidden": [40], "num_classes": 5})
    )
    assert graph.num_nodes >= lpe_module.SPARSE_THRESHOLD
    pe = laplacian_pe(graph.edge_index, graph.num_nodes, 8)
    row, col, val = normalized_laplacian(graph.edge_index, graph.num_nodes)
    lap = torch.zeros(graph.num_nodes, graph.num_nodes).index_put_((row, col), val, accumulate=True)
    eig = torch.diag(pe.T @ lap @ pe)
    assert torch.allclose(lap @ pe, pe * eig, atol=1e-4)
    assert torch.allclose(pe.norm(dim=0), torch.ones(8), atol=1e-4)
    top = pe.abs().argmax(dim=0)
    assert (pe[top, torch.arange(8)] > 0).all()
    dense = torch.linalg.eigvalsh(lap.double())
    assert torch.allclose(eig.double(), dense[1:9], atol=1e-4)  # the 8 smallest non-trivial


@pytest.mark.slow
def test_a_110m_llama_graph_has_an_edge_per_parameter_plus_auxiliary_edges():
    args = {
        "vocab_size": 128_256,
        "context": 2048,
        "d_model": 384,
        "n_layers": 6,
        "n_heads": 6,
        "n_kv_heads": 2,
        "mlp_hidden": 1536,
    }
    model = build_model("llama", args, device="meta")
    graph = build_param_graph(model)
    n_params = sum(p.numel() for p in model.parameters())
    assert graph.num_param_edges == n_params == 111_481_728
    aux = 6 * (2 * 384 + 6 * 64 + 2 * 64 * 3)  # residuals, heads to q (all) and v (shared)
    assert graph.num_edges == n_params + aux + graph.num_nodes


def test_dense_lpe_equals_pyg_laplacian_pe_up_to_column_sign(fm16):
    # The reference computes its PE with this PyG transform; on the same machine (same LAPACK)
    # our dense path gives the same vectors, degenerate eigenspaces included.
    import torch_geometric.transforms as T
    from torch_geometric.data import Data

    _, graph = fm16
    data = T.ToUndirected()(Data(edge_index=graph.edge_index, num_nodes=graph.num_nodes))
    theirs = T.AddLaplacianEigenvectorPE(k=8, is_undirected=True)(data).laplacian_eigenvector_pe
    ours = graph.lpe()
    signs = torch.sign((ours * theirs).sum(dim=0))
    assert torch.equal(ours, theirs.float() * signs)
