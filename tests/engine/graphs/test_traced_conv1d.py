"""Hugging Face GPT-2 in the traced parameter graph: transformers' ``Conv1D`` and a tied head.

``Conv1D`` stores its weight ``[in, out]`` and computes ``addmm(bias, x, W)``; the graph reads it
as the ``nn.Linear`` holding ``W.T`` (the same neurons, edges and edge values), and splits its
output columns into query/key/value roles as for a fused-QKV Linear. GPT-2's head is tied to
``wte``: the table is placed once, as the embedding, as in the published graphs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from tests.engine.graphs.test_param_symmetry import check, clone, permute_cols, permute_rows
from tests.engine.graphs.test_traced_attention import D, NanoGPT, counts
from workers.errors import ModelError
from workers.graphs.params.container import EDGE_TYPES, graph_features, params_from_features
from workers.graphs.params.graph import build_param_graph
from workers.graphs.params.traced import traced_param_graph
from workers.zoo.hf import build_hf_model

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128,
        "vocab_size": 84, "bos_token_id": 0, "eos_token_id": 0}  # fmt: skip
SMALL = {**GPT2, "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 12}


def random_gpt2(config: dict) -> nn.Module:
    """A GPT-2 whose every weight has its own value (norms start at 1 / 0, biases at 0)."""
    torch.manual_seed(0)
    model = build_hf_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def as_conv1d(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Linear but the head replaced by its Conv1D (``W.T``)."""
    copy = clone(model)
    for name, module in list(copy.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and f"{name}.{child_name}".strip(".") != "lm_head":
                conv = Conv1D(child.out_features, child.in_features)
                with torch.no_grad():
                    conv.weight.copy_(child.weight.T)
                    conv.bias.copy_(child.bias)
                setattr(module, child_name, conv)
    return copy


def state(model: nn.Module, graph) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if n in graph.param_shapes}


# -- Conv1D is the Linear holding W.T ---------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True], ids=["matmul-softmax", "sdpa"])
def test_a_nanogpt_with_conv1d_layers_gives_exactly_the_graph_of_its_linear_twin(fused):
    linear = NanoGPT(fused)
    conv = as_conv1d(linear)
    a, b = build_param_graph(linear), build_param_graph(conv)
    assert a.num_nodes == b.num_nodes and a.num_param_edges == b.num_param_edges
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)
    # The same weight value on the same edge (query, key and value pieces of c_attn included).
    assert torch.equal(graph_features(a, state(linear, a)), graph_features(b, state(conv, b)))
    assert b.left == () and counts(b)["key"] == 2 * D * D


def test_a_chain_of_conv1d_layers_gives_the_graph_of_the_linear_chain():
    torch.manual_seed(2)
    linear = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3))
    conv = as_conv1d(linear)
    x = torch.randn(2, 5)
    assert torch.allclose(linear(x), conv(x), atol=1e-6)
    a, b = traced_param_graph(linear, x[:1]), traced_param_graph(conv, x[:1])
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)
    assert torch.equal(graph_features(a, state(linear, a)), graph_features(b, state(conv, b)))


def test_a_perturbed_conv1d_weight_shows_on_its_key_edge_and_comes_back_to_its_entry():
    model = random_gpt2(SMALL)
    graph = build_param_graph(model)
    name, d = "transformer.h.0.attn.c_attn.weight", SMALL["n_embd"]
    i, j = 3, 5  # input channel 3 -> key dimension 5 (output column d + 5)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[i, d + j] = 7.25
    params = state(model, graph)
    feats = graph_features(graph, params)
    key = next(s for s in graph.segments if s.name == name and s.col_start == d)
    query = next(s for s in graph.segments if s.name == name and s.col_start == 0)
    edge = key.edge_start + i * key.n_dst + j
    assert feats[edge, 0] == 7.25 and graph.edge_type[edge] == EDGE_TYPES["key"]
    # Keys run transposed: from the query neuron j (where key j sits) back to input channel i.
    q_edges = graph.edge_index[:, query.edge_start : query.edge_end].view(2, d, d)
    assert graph.edge_index[0, edge] == q_edges[1, i, j]
    assert graph.edge_index[1, edge] == q_edges[0, i, j]
    back = params_from_features(graph, feats)
    assert all(torch.equal(back[n], p) for n, p in params.items())
    assert feats.view(-1)[graph.element_index(name)].view(d, 3 * d)[i, d + j] == 7.25


# -- the HF GPT-2 config, tied head -------------------------------------------------------------


def test_a_hugging_face_gpt2_config_is_read_whole_with_its_tied_head_placed_once():
    model = build_hf_model(GPT2)
    graph = build_param_graph(model)
    # Nothing is left: the tied head is the embedding table, counted once (as the optimizer
    # and the published graphs count it).
    assert graph.coverage() == {"nowcast": 113_664, "total": 113_664, "left": []}
    assert sum(p.numel() for p in model.parameters()) == 113_664
    assert "transformer.wte.weight" in graph.param_shapes
    assert "lm_head.weight" not in graph.param_shapes
    # 84 token rows + 64 stream neurons (the 128 position rows' neurons merge into them);
    # per layer: ln_1 2, qkv bias 3, 64 query + 64 value neurons, 4 heads, c_proj 1 + 64, ln_2 2,
    # c_fc 1 + 256, c_proj 1 + 64; ln_f 2; the head adds none (its outputs are the token rows).
    per_layer = 2 + 3 + 64 + 64 + 4 + 65 + 2 + 257 + 65
    assert graph.num_nodes == 84 + 64 + 128 + 2 * per_layer + 2
    mine = counts(graph)
    assert mine["query"] == mine["key"] == mine["value"] == 2 * 64 * 64
    assert mine["linear"] == 2 * (64 * 64 + 2 * 64 * 256)  # c_proj, c_fc, mlp.c_proj; no head
    assert mine["token_embedding"] == 84 * 64 and mine["position_embedding"] == 128 * 64
    assert mine["head"] == 2 * 4 * (16 + 16)


def test_a_tied_hugging_face_llama_head_is_placed_once_as_its_embedding():
    config = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 16,
              "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32,
              "vocab_size": 20, "max_position_embeddings": 32,
              "tie_word_embeddings": True}  # fmt: skip
    model = build_hf_model(config)
    graph = build_param_graph(model)
    assert graph.coverage()["left"] == []
    assert set(graph.param_shapes) == {n for n, _ in model.named_parameters()}


def test_a_nanogpt_whose_head_is_tied_by_assignment_places_the_table_once():
    # The fx trace names the head's weight lm_head.weight: a tied parameter goes by its first
    # name, the one model.named_parameters() (and so the optimizer) uses.
    model = NanoGPT()
    model.lm_head.weight = model.wte.weight
    graph = build_param_graph(model)
    assert set(graph.param_shapes) == {n for n, _ in model.named_parameters()}
    assert graph.coverage()["left"] == [] and "lm_head.weight" not in graph.param_shapes
    assert graph.num_nodes == 200 - 11  # the untied twin's count less the head's outputs


def gpt2_ends(graph) -> dict[int, str]:
    """Token rows (the model's input and, tied, its output) and position rows keep meaning."""
    fixed = {}
    for name, role in (("transformer.wte.weight", "tok"), ("transformer.wpe.weight", "pos")):
        seg = next(s for s in graph.segments if s.name == name)
        rows = graph.edge_index[0, seg.edge_start : seg.edge_end].view(seg.n_src, seg.n_dst)
        fixed.update({int(n): f"{role}{i}" for i, n in enumerate(rows[:, 0].tolist())})
    return fixed


def test_swapping_two_gpt2_heads_keeps_the_hash_mixing_queries_and_keys_does_not():
    model = random_gpt2(SMALL)
    graph = build_param_graph(model)
    fixed = gpt2_ends(graph)
    x = torch.randint(0, SMALL["vocab_size"], (2, 6))
    d = SMALL["n_embd"]
    dims = torch.cat([torch.arange(8, 16), torch.arange(8)])  # head 1's dimensions, then head 0's
    qkv = torch.cat([dims, dims + d, dims + 2 * d])
    swapped = clone(model)
    attn = swapped.transformer.h[0].attn
    permute_cols(attn.c_attn.weight, perm=qkv)  # Conv1D: the output columns
    permute_rows(attn.c_attn.bias, perm=qkv)  # query, key and value biases move with them
    permute_rows(attn.c_proj.weight, perm=dims)  # Conv1D: the input rows
    assert check(model, swapped, x, graph, fixed, same_function=True)
    mixed = clone(model)
    cols = torch.arange(3 * d)
    cols[0], cols[d] = d, 0  # query dimension 0 <-> key dimension 0
    permute_cols(mixed.transformer.h[0].attn.c_attn.weight, perm=cols)
    permute_rows(mixed.transformer.h[0].attn.c_attn.bias, perm=cols)
    assert not check(model, mixed, x, graph, fixed, same_function=False)


def test_permuting_the_input_channels_of_c_attn_changes_the_gpt2_hash():
    model = random_gpt2(SMALL)
    graph = build_param_graph(model)
    permuted = clone(model)
    rows = torch.arange(SMALL["n_embd"]).roll(1)
    permute_rows(permuted.transformer.h[0].attn.c_attn.weight, perm=rows)
    x = torch.randint(0, SMALL["vocab_size"], (2, 6))
    assert not check(model, permuted, x, graph, gpt2_ends(graph), same_function=False)


def test_the_key_bias_of_gpt2_joins_the_query_neurons_its_keys_sit_on():
    graph = build_param_graph(random_gpt2(SMALL))
    d = SMALL["n_embd"]
    bias = [s for s in graph.segments if s.name == "transformer.h.0.attn.c_attn.bias"]
    weight = [s for s in graph.segments if s.name == "transformer.h.0.attn.c_attn.weight"]
    assert [(s.row_start, s.row_end) for s in bias] == [(0, d), (d, 2 * d), (2 * d, 3 * d)]
    query_neurons = graph.edge_index[1, weight[0].edge_start : weight[0].edge_start + d]
    key_bias = graph.edge_index[:, bias[1].edge_start : bias[1].edge_end]
    assert torch.equal(key_bias[1], query_neurons)
    assert len(torch.unique(torch.cat([graph.edge_index[0, s.edge_start : s.edge_end]
                                       for s in bias]))) == 3  # fmt: skip


# -- nowcasting ----------------------------------------------------------------------------------


def test_nino_nowcasts_every_parameter_of_a_tiny_hugging_face_gpt2_at_its_first_jump():
    from tests.engine.nino.published import require_checkpoint
    from workers.nino import load_model
    from workers.nino.optimizer import NiNo, NowcastConfig

    require_checkpoint("nino_no_posw")
    model = build_hf_model(SMALL)
    torch.manual_seed(0)
    config = NowcastConfig(period=10, ctx=5, max_steps=50)
    base = torch.optim.AdamW(model.parameters(), lr=1e-2)
    optimizer = NiNo(base, model, load_model("nino_no_posw"), config)
    assert optimizer.coverage["left"] == []
    x = torch.randint(0, SMALL["vocab_size"], (4, 9))
    while not optimizer.next_step_is_jump:
        optimizer.zero_grad()
        logits = model(x[:, :-1])
        nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        optimizer.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert optimizer.step() is True  # the jump
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all() and not torch.equal(before[name], p), name
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied


# -- what is still refused -----------------------------------------------------------------------


class ResidualAddmm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.w = nn.Linear(4, 4), nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        h = self.fc(x)
        return torch.addmm(h, h, self.w)  # computed features where Conv1D has its bias


def test_an_addmm_that_adds_computed_features_is_refused_naming_it():
    with pytest.raises(ModelError, match=r"addmm at .* adds computed features to x @ w"):
        traced_param_graph(ResidualAddmm(), torch.zeros(1, 4))
