"""The parameter graph read from the traced data flow: hand-counted tiny models per family,
parameters left to the base optimizer (coverage), refusals that name the op, and the built-in
chains giving exactly the chain builder's graph (so the golden FM/16 graph is unchanged)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from workers.errors import ModelError
from workers.graphs.params.container import EDGE_TYPES, graph_features, params_from_features
from workers.graphs.params.graph import build_param_graph, chain_param_graph
from workers.graphs.params.summary import param_graph_summary
from workers.zoo.build import build_model

SMALL = {
    "mlp": {"in_features": 12, "hidden": [7, 5], "num_classes": 3},
    "cnn": {"in_channels": 2, "channels": [4, 6], "num_classes": 3},
}


def count(graph, kind: str) -> int:
    return int((graph.edge_type == EDGE_TYPES[kind]).sum())


def edges_of(graph, name: str) -> torch.Tensor:
    return graph.edge_index[:, slice(*graph.edge_ranges[name])]


@pytest.fixture
def parallel_edges(monkeypatch):
    """Kernels above 3x3 on parallel edges instead of left to the base optimizer."""
    from workers.graphs.params import traced

    monkeypatch.setattr(traced, "LARGE_KERNELS", "edges")


def round_trips(graph, model: nn.Module) -> bool:
    params = {n: p.detach() for n, p in model.named_parameters() if n in graph.param_shapes}
    back = params_from_features(graph, graph_features(graph, params))
    return all(torch.equal(back[n], params[n]) for n in params)


# -- the built-in chains: the very graph of the chain builder ---------------------------------


@pytest.mark.parametrize("family", ["mlp", "cnn"])
@pytest.mark.parametrize("small", [True, False])
def test_a_built_in_chain_traced_gives_the_chain_builders_graph_node_for_node(family, small):
    model = build_model(family, SMALL[family] if small else None)
    traced, chain = build_param_graph(model), chain_param_graph(model)
    assert torch.equal(traced.edge_index, chain.edge_index)
    assert torch.equal(traced.edge_type, chain.edge_type)
    assert traced.segments == chain.segments and traced.num_nodes == chain.num_nodes
    assert traced.left == ()


# -- residual networks -------------------------------------------------------------------------


def tiny_resnet() -> nn.Module:
    downsample = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        BasicBlock(4, 4),
        BasicBlock(4, 8, stride=2, downsample=downsample),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def test_a_two_block_resnet_with_downsample_has_the_hand_counted_nodes_and_edges():
    model = tiny_resnet()
    graph = build_param_graph(model, torch.zeros(1, 1, 8, 8))
    # input 1 | stem bias+4 | bn 2 | block 1: conv 4, bn 2, conv 4, bn 2 |
    # block 2: conv 8, bn 2, conv 8, bn 2, downsample conv 8, bn 2 | fc bias+3
    assert graph.num_nodes == 1 + 5 + 2 + 12 + 30 + 4
    weights = 4 * 1 + 4 * 4 + 4 * 4 + 4 * 8 + 8 * 8 + 4 * 8 + 8 * 3  # one edge per channel pair
    vectors = 4 + 2 * 4 + 2 * 4 * 2 + 2 * 8 * 3 + 3  # biases and norm affines
    assert graph.num_param_edges == weights + vectors
    assert count(graph, "residual") == 4 + 8
    assert graph.num_edges == graph.num_param_edges + 12 + graph.num_nodes
    assert round_trips(graph, model)


def test_residual_edges_run_from_the_skip_to_the_branch_one_to_one_and_the_sum_reads_on():
    model = tiny_resnet()
    graph = build_param_graph(model, torch.zeros(1, 1, 8, 8))
    stem = edges_of(graph, "0.bias")[1]
    block1 = edges_of(graph, "3.conv2.weight")[1].unique()
    residual = graph.edge_index[:, graph.edge_type == EDGE_TYPES["residual"]]
    assert torch.equal(residual[:, :4], torch.stack([stem, block1]))
    # The second block reads the sum: its first conv starts at the branch neurons.
    assert set(edges_of(graph, "4.conv1.weight")[0].tolist()) == set(block1.tolist())
    # Its downsample runs after the branch in forward order: branch -> downsample neurons.
    down = edges_of(graph, "4.downsample.0.weight")[1].unique()
    branch = edges_of(graph, "4.conv2.weight")[1].unique()
    assert torch.equal(residual[:, 4:], torch.stack([branch, down]))


def test_torchvision_resnet18_is_covered_but_its_7x7_stem_which_is_left_to_the_base_optimizer():
    graph = build_param_graph(torchvision.models.resnet18(num_classes=10))
    coverage = graph.coverage()
    assert coverage["total"] == 11_181_642
    assert coverage["nowcast"] == 11_181_642 - 64 * 3 * 49
    assert [e["name"] for e in coverage["left"]] == ["conv1.weight"]
    assert "49 kernel positions" in coverage["left"][0]["reason"]


def test_resnet18_on_parallel_edges_spreads_its_7x7_stem_over_six_edges_per_pair(parallel_edges):
    model = torchvision.models.resnet18(num_classes=10)
    graph = build_param_graph(model)
    assert graph.coverage()["nowcast"] == graph.coverage()["total"] == 11_181_642
    stem = [s for s in graph.segments if s.name == "conv1.weight"]
    assert [(s.kernel, s.pos_start, s.pos_total) for s in stem] == [
        (9, 0, 49), (9, 9, 49), (9, 18, 49), (9, 27, 49), (9, 36, 49), (4, 45, 49)
    ]  # fmt: skip
    assert round_trips(graph, model)


# -- grouped, depthwise, concatenation, flatten ------------------------------------------------


def test_a_depthwise_separable_block_joins_each_channel_only_to_its_own_filter():
    model = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.ReLU(), nn.Conv2d(3, 6, 1))
    graph = build_param_graph(model, torch.zeros(1, 3, 8, 8))
    assert graph.num_nodes == 3 + 4 + 7
    assert graph.num_param_edges == 3 + 3 + 18 + 6
    src, dst = edges_of(graph, "0.weight")
    assert torch.equal(src, torch.tensor([0, 1, 2])) and torch.equal(dst, torch.tensor([4, 5, 6]))
    assert round_trips(graph, model)


def test_a_grouped_convolution_has_edges_inside_its_groups_only():
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, bias=False))
    graph = build_param_graph(model, torch.zeros(1, 4, 6, 6))
    src, dst = edges_of(graph, "0.weight")
    assert len(src) == 2 * 2 * 3  # two groups of 2 inputs x 3 outputs
    assert all((s < 2) == (d < 4 + 3) for s, d in zip(src.tolist(), dst.tolist(), strict=True))
    assert round_trips(graph, model)


class DenseStyle(nn.Module):
    """x -> conv a; conv b reads cat([x, a]) along the channels (DenseNet growth)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(5, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cat([x, torch.relu(self.a(x))], dim=1))


def test_a_densenet_style_concat_reads_both_sources_at_their_channel_offsets():
    graph = build_param_graph(DenseStyle(), torch.zeros(1, 2, 5, 5))
    assert graph.num_nodes == 2 + 4 + 5
    src, _ = edges_of(graph, "b.weight")
    a_out = edges_of(graph, "a.bias")[1]
    assert torch.equal(src.view(5, 4)[:, 0], torch.cat([torch.tensor([0, 1]), a_out]))


def test_a_linear_after_flatten_reads_each_channel_through_its_positions_like_a_kernel(
    parallel_edges,
):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))
    graph = build_param_graph(model, torch.zeros(1, 1, 4, 4))
    (seg,) = [s for s in graph.segments if s.name == "2.weight"]
    assert (seg.n_src, seg.n_dst, seg.kernel) == (4, 5, 4)
    assert round_trips(graph, model)
    # 7x7 feature maps (VGG, AlexNet heads): 49 positions over 6 parallel edges.
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 49, 3))
    graph = build_param_graph(model, torch.zeros(1, 1, 7, 7))
    assert len([s for s in graph.segments if s.name == "2.weight"]) == 6
    assert round_trips(graph, model)


def test_a_channel_shuffle_is_followed_as_a_permutation_of_the_channels():
    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = self.a(x)
            y = y.view(1, 2, 2, 3, 3).transpose(1, 2).reshape(1, 4, 3, 3)
            return self.b(y)

    graph = build_param_graph(Shuffle(), torch.zeros(1, 1, 3, 3))
    a_out = edges_of(graph, "a.bias")[1]
    src = edges_of(graph, "b.weight")[0].view(4, 2)[:, 0]
    assert torch.equal(src, a_out[[0, 2, 1, 3]])


# -- transformers ------------------------------------------------------------------------------


def tiny_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=4, mlp_dim=6,
        num_classes=3,
    )  # fmt: skip


def test_a_tiny_vit_with_class_token_has_the_hand_counted_nodes_and_edges():
    model = tiny_vit()
    graph = build_param_graph(model)
    # The 4x4 patch kernel (16 positions) is left to the base optimizer; its neurons stay.
    assert [name for name, _, _ in graph.left] == ["conv_proj.weight"]
    # input 3 | patch conv bias+4 | class token 1 | 5 positions | ln 2 |
    # attention: 3 biases, 4 query, 4 value, 2 heads; out proj bias+4 | ln 2 | mlp 7, 5 |
    # final ln 2 | head bias+3
    assert graph.num_nodes == 3 + 5 + 1 + 5 + 2 + 13 + 5 + 2 + 7 + 5 + 2 + 4
    patch = 4  # the bias only
    attention = 3 * 16 + 12 + 16 + 4
    assert graph.num_param_edges == (
        patch + 4 + 20 + 8 + attention + 8 + (24 + 6) + (24 + 4) + 8 + (12 + 3)
    )
    assert count(graph, "head") == 2 * 2 * 2 and count(graph, "residual") == 4 + 4
    assert count(graph, "position_embedding") == 4 + 20
    assert round_trips(graph, model)


def test_vit_keys_run_transposed_onto_the_query_neurons_as_in_the_built_in_gpt():
    graph = build_param_graph(tiny_vit())
    name = "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"
    start, _ = graph.edge_ranges[name]
    q = graph.edge_index[1, start : start + 16]
    keys = graph.edge_index[:, start + 16 : start + 32]
    assert (graph.edge_type[start + 16 : start + 32] == EDGE_TYPES["key"]).all()
    assert set(keys[0].tolist()) == set(q.tolist())  # stored query -> block input


class GPTish(nn.Module):
    """Blocks as ModuleDicts of plain layers, the data flow (attention) in the top forward."""

    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.wte, self.wpe = nn.Embedding(11, 8), nn.Embedding(6, 8)
        self.h = nn.ModuleList(
            nn.ModuleDict({"ln": nn.LayerNorm(8), "qkv": nn.Linear(8, 24), "proj": nn.Linear(8, 8)})
            for _ in range(2)
        )
        self.head = nn.Linear(8, 11)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            q, k, v = block["qkv"](block["ln"](x)).split(8, dim=-1)
            if self.sdpa:
                y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                y = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
            x = x + block["proj"](y)
        return self.head(x)


@pytest.mark.parametrize("sdpa", [False, True], ids=["matmul", "scaled_dot_product"])
def test_a_gpt_of_module_dicts_with_the_flow_in_its_forward_gets_attention_never_a_chain(sdpa):
    # The attention is read from the tensor ops (workers.graphs.params.attention): one head of
    # 8 dimensions, queries/keys/values typed, residual and head edges, nothing left.
    graph = build_param_graph(GPTish(sdpa))
    assert graph.left == ()
    # 11 + 8 token rows and neurons, 6 position rows | per block: ln 2, qkv biases 3, query 8,
    # value 8, one head, proj bias + 8 | head bias + 11
    assert graph.num_nodes == 11 + 8 + 6 + 2 * (2 + 3 + 8 + 8 + 1 + 9) + 12
    for role in ("query", "key", "value"):
        assert count(graph, role) == 2 * 64
    assert count(graph, "residual") == 2 * 8 and count(graph, "head") == 2 * (8 + 8)


def test_a_position_embedding_added_to_a_token_embedding_shares_its_neurons():
    class Embed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe, self.head = nn.Embedding(11, 8), nn.Embedding(6, 8), nn.Linear(8, 5)

        def forward(self, idx):
            return self.head(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))

    graph = build_param_graph(Embed())
    assert graph.num_nodes == 11 + 8 + 6 + 1 + 5  # no neurons of the position embedding's own
    tok, pos = edges_of(graph, "wte.weight"), edges_of(graph, "wpe.weight")
    assert set(pos[1].tolist()) == set(tok[1].tolist())
    assert count(graph, "token_embedding") == 88 and count(graph, "position_embedding") == 48
    assert count(graph, "residual") == 0


def test_a_gated_mlp_joins_the_gate_to_the_gated_neurons_one_to_one():
    class SwiGLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate, self.up, self.down = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 4)

        def forward(self, x):
            return self.down(nn.functional.silu(self.gate(x)) * self.up(x))

    graph = build_param_graph(SwiGLU(), torch.zeros(1, 3, 4))
    gate, up = edges_of(graph, "gate.bias")[1], edges_of(graph, "up.bias")[1]
    residual = graph.edge_index[:, graph.edge_type == EDGE_TYPES["residual"]]
    assert torch.equal(residual, torch.stack([gate, up]))
    assert set(edges_of(graph, "down.weight")[0].tolist()) == set(up.tolist())


# -- coverage: what is left to the base optimizer, and why ---------------------------------------


def test_parameters_the_graph_cannot_place_are_left_with_their_reason_and_counted():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 2)
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    model = Odd()
    graph = build_param_graph(model, torch.zeros(1, 4))
    coverage = graph.coverage()
    assert coverage["total"] == sum(p.numel() for p in model.parameters())
    assert coverage["nowcast"] == (4 * 6 + 6) + (6 * 2 + 2)
    reasons = {e["name"]: e["reason"] for e in coverage["left"]}
    assert set(reasons) == {"act.weight", "unused.weight", "unused.bias"}
    assert "PReLU" in reasons["act.weight"] and "not used" in reasons["unused.bias"]
    summary = param_graph_summary(model)
    assert summary["supported"] is True and summary["coverage"] == coverage


def test_a_linear_reading_a_channel_last_flatten_is_left_but_its_neighbours_are_kept():
    class ChannelLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 3, 1), nn.Linear(3 * 2 * 2, 2)

        def forward(self, x):
            return self.fc(self.conv(x).permute(0, 2, 3, 1).flatten(1))

    graph = build_param_graph(ChannelLast(), torch.zeros(1, 1, 2, 2))
    left = {name: reason for name, reason, _ in graph.left}
    assert list(left) == ["fc.weight"] and "repeat channels" in left["fc.weight"]
    assert {"conv.weight", "conv.bias", "fc.bias"} <= set(graph.param_shapes)


# -- refusals name the op ------------------------------------------------------------------------


def test_a_reduction_over_the_channels_is_refused_naming_the_op():
    class ChannelMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 1), nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=1).flatten(1))

    with pytest.raises(ModelError, match=r"reduces over the channels with mean"):
        build_param_graph(ChannelMean(), torch.zeros(1, 1, 1, 3))


def test_untraceable_control_flow_is_refused_with_the_tracers_reason():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ModelError, match="cannot be traced"):
        build_param_graph(DataDependent())


def test_a_layer_used_twice_is_refused_as_shared_weights():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(ModelError, match="used more than once"):
        build_param_graph(Twice(), torch.zeros(1, 3))


def test_a_model_on_the_meta_device_gives_the_same_traced_graph_as_a_real_one():
    real = tiny_resnet()
    with torch.device("meta"):
        meta = tiny_resnet()
    a = build_param_graph(real, torch.zeros(1, 1, 8, 8))
    b = build_param_graph(meta, torch.zeros(1, 1, 8, 8))
    assert torch.equal(a.edge_index, b.edge_index) and a.segments == b.segments


def test_the_summary_counts_a_traced_graph_as_the_built_graph_has_it_with_or_without_edges():
    model = tiny_vit()
    graph = build_param_graph(model)
    listed = param_graph_summary(model, max_edges=10**6)
    counted = param_graph_summary(model, max_edges=10)
    assert listed["edges_listed"] and not counted["edges_listed"]
    for summary in (listed, counted):
        assert summary["nodes"] == graph.num_nodes and summary["edges"] == graph.num_edges
        assert summary["param_edges"] == graph.num_param_edges
        assert summary["by_type"]["position_embedding"] == 24
        assert summary["coverage"] == graph.coverage()
    assert len(listed["edge_list"]) == graph.num_edges


def test_an_exported_resnet_as_uploaded_gives_the_graph_of_the_live_module():
    model = tiny_resnet().eval()
    x = torch.zeros(1, 1, 8, 8)
    exported = torch.export.export(model, (x,)).module()
    live, uploaded = build_param_graph(model, x), build_param_graph(exported, x)
    assert torch.equal(live.edge_index, uploaded.edge_index)
    assert torch.equal(live.edge_type, uploaded.edge_type)
    assert uploaded.left == ()


def test_a_7x7_kernel_left_to_the_base_optimizer_is_listed_with_the_reason():
    model = nn.Sequential(nn.Conv2d(3, 4, 7, padding=3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    graph = build_param_graph(model, torch.zeros(1, 3, 8, 8))
    assert [(name, reason) for name, reason, _ in graph.left] == [
        ("0.weight", "49 kernel positions: above 3x3, nowcasting them hurts")
    ]
    assert "0.bias" in graph.param_shapes and round_trips(graph, model)
