"""DeepNets-1M-style generator: reproducible specs, buildable nets, budgets, splits, graphs."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from workers.ghn import GHN3, GHN3Config, predict_parameters
from workers.ghn.deepnets import (
    MAX_PARAMS,
    OPS,
    SPLITS,
    ArchSpec,
    build_network,
    count_parameters,
    sample_network,
    sample_spec,
)
from workers.ghn.deepnets_ops import make_op, op_param_count
from workers.graphs.arch.graph import ArchGraph, architecture_graph

FORMATS = {
    "fm": {"in_channels": 1, "image_size": 28, "num_classes": 10},
    "cifar": {"in_channels": 3, "image_size": 32, "num_classes": 10},
}
SEEDS = range(6)  # per split and input format: 12 networks per split in the default run
SLOW_SEEDS = range(6, 56)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Keep CPU use low; the machines running these tests are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def specs() -> dict[tuple[str, str], list[ArchSpec]]:
    """A few specs per split and input format."""
    return {
        (split, fmt): [sample_spec(split, seed, **kwargs) for seed in SEEDS]
        for split in SPLITS
        for fmt, kwargs in FORMATS.items()
    }


Traced = tuple[ArchSpec, ArchGraph, tuple[int, ...]]


def _trace(spec: ArchSpec) -> Traced:
    """Build on CPU and graph it; the graph's forward pass (batch 1) also gives the output."""
    net = build_network(spec)
    shapes: list[tuple[int, ...]] = []
    net.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    graph = architecture_graph(net, _example(spec, 1))
    return spec, graph, shapes[-1]


@pytest.fixture(scope="module")
def traced(specs: dict[tuple[str, str], list[ArchSpec]]) -> dict[tuple[str, str], list[Traced]]:
    """Graph and output shape of every network in ``specs`` (one forward pass each)."""
    torch.manual_seed(0)
    return {key: [_trace(spec) for spec in group] for key, group in specs.items()}


def _check_graph(graph: ArchGraph) -> None:
    assert graph.unknown_ops == []
    assert graph.not_covered == []
    # The GHN finds the classifier by position: weight and bias are the last two nodes.
    assert graph.nodes[-2].name.startswith("classifier")
    assert graph.nodes[-1].primitive == "bias"


def _architecture(spec: ArchSpec) -> dict:
    """The spec without its provenance (split, seed, attempt): what the network is."""
    data = spec.to_json()
    for key in ("split", "seed", "attempt"):
        data.pop(key)
    return data


def _shapes(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in net.named_parameters()]


def _example(spec: ArchSpec, batch: int, device: str = "cpu") -> torch.Tensor:
    size = (batch, spec.in_channels, spec.image_size, spec.image_size)
    return torch.randn(size, device=device)


def test_same_split_and_seed_give_the_same_spec_and_parameters() -> None:
    for split in SPLITS:
        for seed in (0, 7):
            a, net_a = sample_network(split, seed, device="meta")
            b, net_b = sample_network(split, seed, device="meta")
            assert a == b
            assert _shapes(net_a) == _shapes(net_b)


def test_different_seeds_give_different_networks() -> None:
    archs = [json.dumps(_architecture(sample_spec("train", seed))) for seed in range(50)]
    assert len(set(archs)) == 50


def test_splits_draw_from_disjoint_streams() -> None:
    # Same seeds, different splits: never the same genotype (C is fixed for the eval splits,
    # so compare the cells, which every split samples from the same operation space).
    def cells(split: str) -> set[str]:
        return {
            json.dumps([s["normal"], s["reduce"], s["n_cells"]])
            for s in (_architecture(sample_spec(split, seed)) for seed in range(300))
        }

    train, val, test = cells("train"), cells("val"), cells("test")
    assert not train & test
    assert not train & val
    assert not val & test


def test_spec_round_trips_through_json(specs: dict[tuple[str, str], list[ArchSpec]]) -> None:
    for group in specs.values():
        for spec in group:
            text = json.dumps(spec.to_json())
            assert ArchSpec.from_json(json.loads(text)) == spec


def test_networks_respect_the_parameter_budget(
    specs: dict[tuple[str, str], list[ArchSpec]],
) -> None:
    for group in specs.values():
        for i, spec in enumerate(group):
            assert count_parameters(spec) <= MAX_PARAMS
            if i < 2:  # the count is computed; check it against the built network
                n = sum(p.numel() for p in build_network(spec, "meta").parameters())
                assert n == count_parameters(spec)


def test_over_budget_draws_are_replaced_by_the_next_sub_seed() -> None:
    first = sample_spec("test", 0)
    limit = count_parameters(first) - 1
    spec = sample_spec("test", 0, max_params=limit)
    assert spec.attempt > 0
    assert count_parameters(spec) <= limit
    assert sample_spec("test", 0, max_params=limit) == spec


def test_operation_sizes_match_the_modules() -> None:
    for name in OPS:
        for stride in (1, 2):
            for bn in (True, False):
                module = make_op(name, 48, stride, bn)
                n = 0 if module is None else sum(p.numel() for p in module.parameters())
                assert op_param_count(name, 48, stride, bn) == n, (name, stride, bn)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_network_gives_logits_for_its_input_format(
    traced: dict[tuple[str, str], list[Traced]], fmt: str
) -> None:
    for split in SPLITS:
        for spec, _, shape in traced[split, fmt]:
            assert spec.in_channels == FORMATS[fmt]["in_channels"]
            assert shape == (1, spec.num_classes)


@pytest.mark.parametrize("fmt", FORMATS)
def test_networks_train_on_cpu(specs: dict[tuple[str, str], list[ArchSpec]], fmt: str) -> None:
    torch.manual_seed(0)
    for split in SPLITS:
        spec = specs[split, fmt][0]
        net = build_network(spec)
        out = net(_example(spec, 2))
        assert out.shape == (2, spec.num_classes)
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        # Every parameter takes part in the forward pass (no dead cells or inputs).
        assert all(p.grad is not None for p in net.parameters()), split


def test_bn_free_networks_have_no_batch_norm(
    specs: dict[tuple[str, str], list[ArchSpec]],
) -> None:
    for fmt in FORMATS:
        for spec in specs["bn-free", fmt]:
            net = build_network(spec, "meta")
            assert not spec.batch_norm
            assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        for spec in specs["test", fmt]:
            assert any(isinstance(m, nn.BatchNorm2d) for m in build_network(spec, "meta").modules())


def test_eval_splits_move_away_from_test_in_the_documented_direction(
    specs: dict[tuple[str, str], list[ArchSpec]],
) -> None:
    def by(split: str) -> list[ArchSpec]:
        return specs[split, "fm"]

    def mean_nodes(group: list[ArchSpec]) -> float:
        return statistics.mean(len(s.normal.nodes) + len(s.reduce.nodes) for s in group)

    test = by("test")
    assert {s.channels for s in test} == {48}
    assert min(s.channels for s in by("wide")) > 48
    assert statistics.mean(s.n_cells for s in by("deep")) > statistics.mean(s.n_cells for s in test)
    assert max(s.n_cells for s in test) <= 18 and min(s.n_cells for s in test) >= 4
    assert mean_nodes(by("dense")) > mean_nodes(test)
    assert all(len(s.normal.nodes) <= 4 for s in test)
    channels = {s.channels for s in by("train")}
    assert len(channels) > 1 and channels <= set(range(32, 129))


def test_reduction_cells_sit_at_one_and_two_thirds(
    specs: dict[tuple[str, str], list[ArchSpec]],
) -> None:
    for spec in specs["deep", "fm"]:
        assert spec.reduce_at == [spec.n_cells // 3, 2 * spec.n_cells // 3]


@pytest.mark.parametrize("split", list(SPLITS))
def test_architecture_graphs_have_only_known_ops(
    traced: dict[tuple[str, str], list[Traced]], split: str
) -> None:
    seen: set[str] = set()
    for fmt in FORMATS:
        for _, graph, _ in traced[split, fmt]:
            _check_graph(graph)
            seen.update(n.primitive for n in graph.nodes)
    assert {"conv", "sum", "input"} <= seen
    assert ("bn" in seen) == (split != "bn-free")


@pytest.mark.slow
@pytest.mark.parametrize("split", list(SPLITS))
def test_many_more_networks_build_run_and_graph(split: str) -> None:
    torch.manual_seed(0)
    for fmt, kwargs in FORMATS.items():
        for seed in SLOW_SEEDS:
            spec, graph, shape = _trace(sample_spec(split, seed, **kwargs))
            assert count_parameters(spec) <= MAX_PARAMS
            assert shape == (1, spec.num_classes), (fmt, seed)
            _check_graph(graph)


def test_attention_and_squeeze_excitation_become_msa_and_cse_nodes(
    traced: dict[tuple[str, str], list[Traced]],
) -> None:
    seen = {n.primitive for group in traced.values() for _, g, _ in group for n in g.nodes}
    wanted = {"msa", "cse", "sep_conv", "dil_conv", "max_pool", "avg_pool", "concat", "glob_avg"}
    assert wanted <= seen


def test_a_ghn_predicts_every_parameter() -> None:
    torch.manual_seed(0)
    spec, net = sample_network("test", 3)
    ghn = GHN3(GHN3Config(hid=16, max_shape=(16, 16, 7, 7), num_classes=10, heads=2, layers=1))
    report = predict_parameters(ghn, net, architecture_graph(net, _example(spec, 1)))
    assert report.not_predicted == {}
    assert report.n_params_predicted == count_parameters(spec)


def test_sampling_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    sample_spec("train", 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        sample_spec("imagenet", 0)
    data = sample_spec("test", 0).to_json()
    data["normal"]["nodes"][0] = [["conv_3x3", 5]]
    with pytest.raises(ValueError, match="reads state"):
        ArchSpec.from_json(data)
    data = sample_spec("test", 0).to_json()
    data["head"] = "transformer"
    with pytest.raises(ValueError, match="head"):
        ArchSpec.from_json(data)
    with pytest.raises(ValueError, match="unknown spec fields"):
        ArchSpec.from_json({**sample_spec("test", 0).to_json(), "depth": 3})
