"""Meta-training our own NiNo: trajectories are stored compactly and read back exactly, windows
carry the right targets and masks, a training step lowers the loss, and the weights we write
load strictly through the same path as the published checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workers.data.datasets import ClassificationData
from workers.graphs.params.graph import build_param_graph
from workers.nino import NiNoModel, load_model
from workers.nino.metatrain import (
    OURS_PATH,
    TrainConfig,
    batch_loss,
    evaluate_nowcast,
    main,
    meta_train,
    save_weights,
    train_step,
)
from workers.nino.optimizer import NiNo, NowcastConfig
from workers.nino.scaling import SCALE_EPS
from workers.nino.trajectories import (
    RunSpec,
    TrajectoryStore,
    collate,
    collect_run,
    flat_params,
    make_window,
    unflatten,
)
from workers.zoo.build import build_model

MLP = {"family": "mlp", "args": {"in_features": 6, "hidden": [5], "num_classes": 3}}
TRANSFORMER = {
    "family": "transformer",
    "args": {
        "vocab_size": 7,
        "context": 4,
        "d_model": 4,
        "n_layers": 1,
        "n_heads": 2,
        "mlp_ratio": 1,
    },
}


def synthetic_run(store, run_id, arch, num_checkpoints, seed=0):
    """A run whose parameters drift linearly with a little noise; returns (entry, float32 rows)."""
    torch.manual_seed(seed)
    model = build_model(arch["family"], arch["args"])
    shapes = [(n, list(p.shape)) for n, p in model.named_parameters()]
    meta = {
        "id": run_id,
        **arch,
        "dataset": "synthetic",
        "seed": seed,
        "steps": 200 * (num_checkpoints - 1),
        "spacing": 200,
        "heldout": False,
    }
    entry, array = store.add_run(meta, shapes, num_checkpoints)
    start = torch.as_tensor(flat_params(model), dtype=torch.float32)
    velocity = 0.01 * torch.randn(start.shape[0])
    rows = torch.stack(
        [start + t * velocity + 1e-3 * torch.randn_like(start) for t in range(num_checkpoints)]
    )
    array[:] = rows.numpy().astype(np.float16)
    store.finish_run(entry, array)
    return entry, rows


@pytest.fixture
def store(tmp_path):
    return TrajectoryStore.create(tmp_path / "trajectories")


def test_trajectories_round_trip_as_float16_memmaps_with_an_index(store, tmp_path):
    data = ClassificationData(
        "synthetic",
        torch.randn(64, 6),
        torch.randint(0, 3, (64,)),
        torch.randn(16, 6),
        torch.randint(0, 3, (16,)),
        num_classes=3,
    )
    spec = RunSpec(
        "mlp", MLP["args"], "synthetic", seed=3, steps=40, spacing=10, lr=1e-2, batch_size=16
    )
    entry = collect_run(store, spec, data)
    reopened = TrajectoryStore.open(store.root)
    index = json.loads((store.root / "index.json").read_text())
    assert [r["id"] for r in index["runs"]] == [spec.run_id]
    saved = reopened.run(spec.run_id)
    assert saved["family"] == "mlp" and saved["seed"] == 3 and saved["spacing"] == 10
    assert saved["params"] == [
        ["layers.0.weight", [5, 6]],
        ["layers.0.bias", [5]],
        ["layers.2.weight", [3, 5]],
        ["layers.2.bias", [3]],
    ]
    array = reopened.array(spec.run_id)
    assert isinstance(array, np.memmap) and array.dtype == np.float16
    assert array.shape == (5, entry["num_params"]) == (5, 5 * 6 + 5 + 3 * 5 + 3)
    # Row 0 is the initialisation, bit for bit after the float16 cast.
    torch.manual_seed(3)
    init = build_model("mlp", MLP["args"])
    np.testing.assert_array_equal(array[0], flat_params(init))
    params = unflatten(saved, array[0])
    assert params["layers.0.weight"].shape == (5, 6)
    torch.testing.assert_close(
        params["layers.0.weight"], init.layers[0].weight.detach().half().float()
    )
    assert not np.array_equal(array[0], array[-1])  # it did train
    assert len(list((store.root / "runs").iterdir())) == 1  # one file per run, not per state


def test_window_targets_are_scaled_future_deltas_and_missing_horizons_are_masked(store):
    entry, _ = synthetic_run(store, "mlp", MLP, num_checkpoints=8)
    window = make_window(store, "mlp", 0, ctx=5, horizons=40)
    graph = build_param_graph(build_model("mlp", MLP["args"], device="meta"))
    assert window.edge_attr.shape == (graph.num_edges, 45)
    assert window.target.shape == window.mask.shape == (graph.num_edges, 9, 40)
    # 8 checkpoints: context rows 0..4, futures 5, 6, 7 -> horizons 1..3 only.
    assert window.mask[:, :, :3].any() and not window.mask[:, :, 3:].any()
    assert (window.target[:, :, 3:] == 0).all()
    # Linear layers use feature position 0 only; self-loops are masked.
    assert not window.mask[:, 1:].any()
    assert not window.mask[graph.aux_mask].any()
    assert window.mask[~graph.aux_mask][:, 0, :3].all()
    # Target of layers.0.weight[o=2, i=1] at horizon 2, by hand in float32 from the stored rows.
    rows = np.asarray(store.array("mlp"), dtype=np.float32)
    w = torch.as_tensor(rows[:, :30]).view(-1, 5, 6)
    ctx = w[:5]
    mean, std = ctx.mean(), ctx.std()
    expected = (w[6, 2, 1] - w[4, 2, 1]) / (std + SCALE_EPS)
    edge = 1 * 5 + 2  # source-major: edge i * n_out + o
    torch.testing.assert_close(window.target[edge, 0, 1], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(window.edge_attr[edge, 4], (w[4, 2, 1] - mean) / (std + SCALE_EPS))


def test_auxiliary_edges_and_unused_kernel_positions_are_masked(store):
    synthetic_run(store, "lm", TRANSFORMER, num_checkpoints=7)
    window = make_window(store, "lm", 1)
    graph = build_param_graph(build_model("transformer", TRANSFORMER["args"], device="meta"))
    aux = graph.aux_mask
    assert aux.sum() > graph.num_nodes  # residual and head edges besides the self-loops
    assert not window.mask[aux].any()
    assert window.mask[~aux][:, 0, :1].all() and not window.mask[:, 1:].any()
    assert window.mask[:, :, 1:].sum() == 0  # 7 rows, start 1: one future state


def test_conv_kernels_fill_nine_positions_of_the_mask(store):
    cnn = {"family": "cnn", "args": {"channels": [2, 3], "image_size": 8}}
    synthetic_run(store, "cnn", cnn, num_checkpoints=6)
    window = make_window(store, "cnn", 0)
    graph = build_param_graph(build_model("cnn", cnn["args"], device="meta"))
    first_conv = graph.edge_ranges["features.0.weight"]
    assert window.mask[first_conv[0] : first_conv[1], :, 0].all()
    bias = graph.edge_ranges["features.0.bias"]
    assert (
        window.mask[bias[0] : bias[1], 0, 0].all() and not window.mask[bias[0] : bias[1], 1:].any()
    )


def test_one_meta_training_step_lowers_the_loss_on_a_fixed_batch(store):
    synthetic_run(store, "a", MLP, num_checkpoints=12, seed=0)
    synthetic_run(
        store, "b", {"family": "mlp", "args": {"in_features": 4, "hidden": [3, 3]}}, 10, 1
    )
    batch = collate([make_window(store, "a", 2), make_window(store, "b", 0)])
    torch.manual_seed(0)
    model = NiNoModel()
    # Adam's first step moves every weight by lr (sign descent); a small lr keeps it first-order.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    with torch.no_grad():
        before = float(batch_loss(model, batch))
    first = train_step(model, opt, batch)
    with torch.no_grad():
        after = float(batch_loss(model, batch))
    assert first == pytest.approx(before, rel=1e-5)
    assert after < before


def test_meta_trained_weights_load_strictly_like_the_published_ones(store, tmp_path):
    synthetic_run(store, "a", MLP, num_checkpoints=9)
    model, summary = meta_train(store, TrainConfig(steps=2, batch=2, log_every=1), log=None)
    assert summary["steps_done"] == 2 and np.isfinite(summary["final_loss"])
    path = save_weights(model, tmp_path / "ours.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "model_args"} and raw["model_args"] == {"wte_pos_enc": False}
    loaded = load_model(path)
    assert isinstance(loaded, NiNoModel)
    window = make_window(store, "a", 0)
    args = (window.edge_index, window.edge_type, window.edge_attr, window.pe)
    torch.testing.assert_close(loaded(*args), model(*args))


def test_train_command_writes_weights_and_a_manifest(store, tmp_path):
    synthetic_run(store, "a", MLP, num_checkpoints=9)
    out = tmp_path / "weights" / "nino_test.pt"
    main(["train", "--data", str(store.root), "--out", str(out), "--steps", "2", "--batch", "1"])
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["file"] == "nino_test.pt" and manifest["initialisation"] == "scratch"
    assert manifest["training"]["steps_done"] == 2 and manifest["data"]["training_runs"] == 1
    assert manifest["command"].startswith("train --data")
    assert isinstance(load_model(out), NiNoModel)
    # The keys of the committed manifest, less what later commands and people add to it.
    committed = json.loads((OURS_PATH.parent / "manifest.json").read_text())
    assert set(manifest) == set(committed) - {"quick_eval", "notes"}
    assert set(manifest["training"]) == set(committed["training"])
    assert manifest["training"]["threads"] == torch.get_num_threads()
    raw = torch.load(out, weights_only=True)["state_dict"]
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in raw.values())


@pytest.mark.skipif(not OURS_PATH.exists(), reason=f"committed weights absent: {OURS_PATH}")
def test_committed_weights_load_and_jump_on_fm16():
    ours = load_model(OURS_PATH)
    assert isinstance(ours, NiNoModel)
    manifest = json.loads((OURS_PATH.parent / "manifest.json").read_text())
    assert manifest["file"] == OURS_PATH.name
    torch.manual_seed(0)
    model = build_model("cnn", {"channels": [16, 32, 32]})
    optimizer = NiNo(
        torch.optim.AdamW(model.parameters(), lr=6e-3),
        model,
        ours,
        NowcastConfig(period=10, ctx=5, max_steps=10),
    )
    states = []
    for t in range(5):
        states.append({n: p.detach() + 0.01 * t for n, p in model.named_parameters()})
    predicted = optimizer.nowcast(states, k=40)
    assert set(predicted) == {n for n, _ in model.named_parameters()}
    assert all(torch.isfinite(v).all() for v in predicted.values())


def test_quick_evaluation_compares_models_with_no_change_on_the_heldout_run(store):
    entry, rows = synthetic_run(store, "held", MLP, num_checkpoints=12)
    entry["heldout"] = True
    store.finish_run(entry, store.array("held"))
    torch.manual_seed(0)
    table = evaluate_nowcast(store, {"fresh": NiNoModel().eval()}, starts=(0, 2), ks=(1, 5))
    assert table["run"] == "held" and set(table["l1"]) == {"fresh", "no_change", "linear"}
    assert table["n_starts"] == {"1": 2, "5": 2}
    # No change: |row[last + k] - row[last]|, averaged over starts, from the float16 rows.
    stored = torch.as_tensor(np.asarray(store.array("held"), dtype=np.float32))
    expected = np.mean(
        [
            float((stored[4 + 5] - stored[4]).abs().mean()),
            float((stored[6 + 5] - stored[6]).abs().mean()),
        ]
    )
    assert table["l1"]["no_change"]["5"] == pytest.approx(expected, rel=1e-5)
