"""The NiNo model reproduces the published reference on FM/16, loads checkpoints strictly, and
streams over edges without changing its answer.

The checkpoints and the golden file are read from the shared directory (never copied into the
repository): ``$NINO_CHECKPOINT_DIR`` (default ``../shared/pretrained/nino``) and
``$NINO_GOLDEN_PATH`` (default ``../shared/golden/golden_nino_fm16.pt``). Tests that need them
are skipped with the reason when they are absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.engine.nino.published import require_checkpoint
from workers.nino import (
    CHECKPOINT_DIR_ENV,
    CheckpointError,
    CheckpointNotFoundError,
    NiNoConfig,
    NiNoModel,
    WNNPlusModel,
    checkpoint_dir,
    fit_scales,
    horizon_at,
    horizon_schedule,
    load_checkpoint,
    load_model,
    scale_states,
    unscale,
)

# float32 agreement we hold ourselves to; measured: 4.3e-6 on raw outputs whose max is 13.5.
ATOL = 2e-5


@pytest.fixture(scope="module")
def graph(golden: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {
        "edge_index": golden["graph"]["edge_index"],
        "edge_type": golden["graph"]["edge_type"],
        "edge_attr": golden["edge_attr_in"],
        "pe": golden["graph"]["lpe"],
    }


# --- the golden FM/16 graph layout, as the golden md describes it (test-only mapping; the
# --- real parameter graph lives in workers/graphs/params/graph.py) --------------------------

SLOTS, CTX = 9, 5


def _flat_to_edges(golden: dict[str, Any], flat: torch.Tensor) -> torch.Tensor:
    """Scaled flat states [P, ctx] -> edge features [E, 9*ctx] (column f*ctx + t)."""
    edges = torch.zeros(golden["meta"]["num_edges"], SLOTS, CTX)
    offset = 0
    for name in golden["param_names"]:
        shape = golden["param_shapes"][name].tolist()
        start, end = golden["edge_ranges"][name].tolist()
        values = flat[offset : offset + int(torch.tensor(shape).prod())].view(*shape, CTX)
        offset += values[..., 0].numel()
        if len(shape) == 1:  # bias: edge start + o, slot 0
            edges[start:end, 0] = values
        else:  # weight (out, in, ...): edge start + i*out + o, slot = kernel position
            per_edge = values.transpose(0, 1).reshape(end - start, -1, CTX)
            edges[start:end, : per_edge.shape[1]] = per_edge
    self_loops = slice(*map(int, golden["meta"]["self_loop_edge_range"].split(":")))
    edges[self_loops, 0] = 2.0
    return edges.reshape(-1, SLOTS * CTX)


def _edges_to_flat(golden: dict[str, Any], out: torch.Tensor) -> torch.Tensor:
    """Predicted edge states [E, 9] -> flat parameter vector [P] (drops padding, self loops)."""
    pieces = []
    for name in golden["param_names"]:
        shape = golden["param_shapes"][name].tolist()
        start, end = golden["edge_ranges"][name].tolist()
        if len(shape) == 1:
            pieces.append(out[start:end, 0])
        else:
            kernel = int(torch.tensor(shape[2:]).prod()) if len(shape) > 2 else 1
            per_edge = out[start:end, :kernel].reshape(shape[1], shape[0], *shape[2:])
            pieces.append(per_edge.transpose(0, 1).reshape(-1))
    return torch.cat(pieces)


def _split_flat(golden: dict[str, Any], flat: torch.Tensor) -> dict[str, torch.Tensor]:
    params, offset = {}, 0
    for name in golden["param_names"]:
        shape = golden["param_shapes"][name].tolist()
        size = int(torch.tensor(shape).prod())
        params[name] = flat[offset : offset + size].view(*shape)
        offset += size
    return params


# --- checkpoints --------------------------------------------------------------------------


def test_published_gnn_checkpoint_loads_strictly_with_the_published_size() -> None:
    path = require_checkpoint("nino_no_posw")
    checkpoint = load_checkpoint(path)
    model = NiNoModel.from_checkpoint(path)
    assert set(model.state_dict()) == set(checkpoint.state_dict)
    assert sum(p.numel() for p in model.parameters()) == 549_992
    assert not model.training


@pytest.mark.parametrize(("name", "hid"), [("nino_mlp", 128), ("nino_mlp_h32", 32)])
def test_published_wnn_plus_checkpoints_load_strictly_with_their_hidden_size(
    name: str, hid: int
) -> None:
    require_checkpoint(name)
    model = load_model(name)
    assert isinstance(model, WNNPlusModel)
    assert model.config.hid == hid
    assert set(model.state_dict()) == set(load_checkpoint(name).state_dict)


def test_gnn_class_refuses_a_wnn_plus_checkpoint() -> None:
    require_checkpoint("nino_mlp")
    with pytest.raises(ValueError, match="WNNPlusModel"):
        NiNoModel.from_checkpoint("nino_mlp")


def test_checkpoint_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = require_checkpoint("nino_mlp_h32")
    shutil.copy(source, tmp_path / "nino_mlp_h32.pt")
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    assert checkpoint_dir() == tmp_path
    assert load_checkpoint("nino_mlp_h32").path == tmp_path / "nino_mlp_h32.pt"


def test_missing_checkpoint_names_the_directory_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match=CHECKPOINT_DIR_ENV) as caught:
        load_model("nino_no_posw")
    assert str(tmp_path) in str(caught.value)


def test_a_tampered_published_checkpoint_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = require_checkpoint("nino_mlp_h32")
    data = bytearray(source.read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "nino_mlp_h32.pt").write_bytes(bytes(data))
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model("nino_mlp_h32")


def test_a_file_without_state_dict_and_model_args_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint(path)


def test_unknown_or_unsupported_model_args_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported NiNo model_args"):
        NiNoConfig.from_model_args({"gnn": True, "aggregation": "max"})
    with pytest.raises(ValueError, match="wte_pos_enc"):
        NiNoConfig.from_model_args({"wte_pos_enc": True})


# --- equality with the reference on FM/16 ---------------------------------------------------


def test_golden_edge_features_follow_the_documented_layout(golden: dict[str, Any]) -> None:
    edges = _flat_to_edges(golden, golden["states_flat_scaled"])
    assert torch.equal(edges, golden["edge_attr_in"])


def test_raw_outputs_match_the_reference(nino: NiNoModel, graph: dict, golden: dict) -> None:
    with torch.no_grad():
        delta = nino(**graph)
    assert delta.shape == (2057, 9, 40)
    error = (delta[:, :, 40 - 1] - golden["model_delta_k40"]).abs().max().item()
    assert error < ATOL, f"max abs error {error:.2e}"


def test_nowcast_with_residual_matches_the_reference(
    nino: NiNoModel, graph: dict, golden: dict
) -> None:
    out = nino.predict(**graph, k=40)
    error = (out - golden["model_out_k40"]).abs().max().item()
    assert error < ATOL, f"max abs error {error:.2e}"


@pytest.mark.parametrize("k", [1, 10, 40])
def test_predicted_parameters_match_the_reference_for_each_horizon(
    nino: NiNoModel, graph: dict, golden: dict, k: int
) -> None:
    flat = _edges_to_flat(golden, nino.predict(**graph, k=k))
    error_scaled = (flat - golden["pred_flat_scaled"][k]).abs().max().item()
    assert error_scaled < ATOL, f"scaled: max abs error {error_scaled:.2e}"

    _, scales = scale_states(golden["context"])
    params = unscale(_split_flat(golden, flat), scales)
    error = max((params[n] - golden["pred"][k][n]).abs().max().item() for n in params)
    # Un-scaling multiplies by std (< 1 here), so the error cannot grow.
    assert error < ATOL, f"un-scaled: max abs error {error:.2e}"


def test_first_two_layers_alone_determine_the_output(nino: NiNoModel, graph: dict) -> None:
    # Documents the published quirk: the third convolution's output is never read.
    before = nino.predict(**graph, k=40)
    with torch.no_grad():
        for p in nino.gnn.convs[2].parameters():
            p.add_(1.0)
        try:
            after = nino.predict(**graph, k=40)
        finally:
            for p in nino.gnn.convs[2].parameters():
                p.sub_(1.0)
    assert torch.equal(before, after)


# --- memory-bounded inference ---------------------------------------------------------------


@pytest.mark.parametrize("edge_chunk", [1, 97, 1000, 10_000])
def test_streaming_over_edge_chunks_gives_the_unchunked_result(
    nino: NiNoModel, graph: dict, edge_chunk: int
) -> None:
    full = nino.predict(**graph, k=40)
    chunked = nino.predict(**graph, k=40, edge_chunk=edge_chunk)
    # Chunks sum messages in another order, so float32 rounding differs (seen: 1.1e-5).
    assert torch.allclose(chunked, full, rtol=1e-5, atol=5e-5)


def test_all_horizons_at_once_equal_the_forward_pass_plus_the_last_state(
    nino: NiNoModel, graph: dict
) -> None:
    with torch.no_grad():
        expected = nino(**graph) + graph["edge_attr"].view(-1, 9, 5)[:, :, -1:]
    out = nino.predict(**graph, edge_chunk=500)
    assert out.shape == (2057, 9, 40)
    assert (out - expected).abs().max().item() < 1e-5


def test_half_precision_edge_inputs_are_upcast_chunk_by_chunk(nino: NiNoModel, graph: dict) -> None:
    full = nino.predict(**graph, k=1)
    half = nino.predict(**{**graph, "edge_attr": graph["edge_attr"].half()}, k=1, edge_chunk=512)
    assert half.dtype == torch.float32
    assert (half - full).abs().max().item() < 0.05  # fp16 input rounding, not a wiring change


def test_bad_inputs_are_refused_with_the_expected_shapes(nino: NiNoModel, graph: dict) -> None:
    with pytest.raises(ValueError, match=r"edge_attr must be \[E, 45\]"):
        nino.predict(**{**graph, "edge_attr": graph["edge_attr"][:, :40]}, k=1)
    with pytest.raises(ValueError, match="horizon k"):
        nino.predict(**graph, k=41)
    with pytest.raises(ValueError, match="pe must be"):
        nino.predict(**{**graph, "pe": graph["pe"][:, :4]}, k=1)


# --- WNN+ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nino_mlp", "nino_mlp_h32"])
def test_wnn_plus_nowcasts_every_parameter_independently(name: str, graph: dict) -> None:
    require_checkpoint(name)
    model = load_model(name)
    with torch.no_grad():
        delta = model(**graph)
    assert delta.shape == (2057, 9, 40) and torch.isfinite(delta).all()
    last = graph["edge_attr"].view(-1, 9, 5)[:, :, -1]
    out = model.predict(**graph, k=10, edge_chunk=300)
    assert (out - (last + delta[:, :, 9])).abs().max().item() < 1e-5
    # No message passing: a parameter's nowcast ignores the rest of the graph.
    alone = model.predict(
        graph["edge_index"][:, :1], graph["edge_type"][:1], graph["edge_attr"][:1], k=10
    )
    assert torch.allclose(alone, out[:1], atol=1e-6)


# --- scaling and schedule -------------------------------------------------------------------


def test_scales_and_scaled_states_match_the_reference(golden: dict[str, Any]) -> None:
    scales = fit_scales(golden["context"])
    for name, scale in scales.items():
        assert torch.allclose(scale.mean, golden["scale_mean"][name], rtol=0, atol=1e-7)
        assert torch.allclose(scale.std, golden["scale_std"][name], rtol=1e-6, atol=0)
    scaled, _ = scale_states(golden["context"])
    flat = torch.stack(
        [torch.cat([state[n].reshape(-1) for n in golden["param_names"]]) for state in scaled],
        dim=1,
    )
    assert (flat - golden["states_flat_scaled"]).abs().max().item() < 1e-5


def test_unscaling_the_reference_prediction_gives_the_reference_parameters(
    golden: dict[str, Any],
) -> None:
    scales = {
        name: scale.__class__(golden["scale_mean"][name], golden["scale_std"][name])
        for name, scale in fit_scales(golden["context"]).items()
    }
    for k in (1, 10, 40):
        params = unscale(_split_flat(golden, golden["pred_flat_scaled"][k]), scales)
        for name, value in params.items():
            assert torch.equal(value, golden["pred"][k][name]), (k, name)


def test_horizon_schedule_is_the_published_one() -> None:
    assert horizon_schedule(10_000, 1000) == [40, 33, 26, 21, 16, 11, 8, 5, 3, 1]
    assert [horizon_at(s, 10_000, 1000) for s in (999, 1999, 9999, 12_999)] == [40, 33, 1, 1]


# --- optional edge sampling -----------------------------------------------------------------


def test_edge_sampling_is_exact_at_ratio_one_and_reproducible_below(
    nino: NiNoModel, graph: dict
) -> None:
    exact = nino.predict(**graph, k=40)
    assert torch.equal(nino.predict(**graph, k=40, edge_sample_ratio=1.0), exact)

    def sampled(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return nino.predict(
            **graph, k=40, edge_chunk=500, edge_sample_ratio=0.5, generator=generator
        )

    assert torch.equal(sampled(0), sampled(0))
    approx = sampled(0)
    assert not torch.equal(approx, exact)
    last = graph["edge_attr"].view(-1, 9, 5)[:, :, -1]
    relative = (approx - exact).norm() / (exact - last).norm()
    assert relative < 0.5, f"half the messages moved the prediction by {relative:.0%}"


def test_invalid_chunk_sizes_and_ratios_are_refused(nino: NiNoModel, graph: dict) -> None:
    with pytest.raises(ValueError, match="edge_chunk"):
        nino.predict(**graph, k=1, edge_chunk=0)
    with pytest.raises(ValueError, match="edge_sample_ratio"):
        nino.predict(**graph, k=1, edge_sample_ratio=0.0)


def test_nino_is_equivariant_to_relabelling_the_neurons(
    nino: NiNoModel, graph: dict[str, torch.Tensor]
) -> None:
    """Renumbering the nodes (with their positional encodings) and reordering the edges gives
    the same prediction for every edge, reordered the same way: the model sees a graph, not an
    order."""
    generator = torch.Generator().manual_seed(0)
    num_nodes = graph["pe"].shape[0]
    node_perm = torch.randperm(num_nodes, generator=generator)  # new label of node i
    edge_perm = torch.randperm(graph["edge_index"].shape[1], generator=generator)
    with torch.no_grad():
        out = nino(graph["edge_index"], graph["edge_type"], graph["edge_attr"], graph["pe"])
        relabelled_pe = torch.empty_like(graph["pe"])
        relabelled_pe[node_perm] = graph["pe"]
        moved = nino(
            node_perm[graph["edge_index"]][:, edge_perm],
            graph["edge_type"][edge_perm],
            graph["edge_attr"][edge_perm],
            relabelled_pe,
        )
    assert torch.allclose(moved, out[edge_perm], atol=1e-5)
