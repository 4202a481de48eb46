"""Our own GHN: differentiable prediction, BatchNorm calibration, architecture sampling for
meta-training, a tiny meta-training run that learns, and the committed weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from workers.data.datasets import fashion_mnist
from workers.ghn import GHN3, GHN3Config, load_ghn, predict_parameters, predict_tensors
from workers.ghn.deepnets import build_network
from workers.ghn.metatrain import (
    OURS_PATH,
    PRESETS,
    ArchPool,
    evaluate_predictions,
    forward_mflops,
    meta_train,
    train_spec,
)
from workers.graphs.arch.graph import architecture_graph
from workers.training.loop import calibrate_batch_norm

FM_EXAMPLE = torch.zeros(2, 1, 28, 28)


@pytest.fixture(scope="module")
def small_ghn() -> GHN3:
    torch.manual_seed(0)
    return GHN3(GHN3Config(hid=32, max_shape=(16, 16, 7, 7), num_classes=10, heads=4, layers=1))


@pytest.fixture(scope="module")
def fm():
    return fashion_mnist()


def small_net(seed: int = 1) -> nn.Module:
    return build_network(train_spec(seed, (8,), (3, 4)))


def test_predicted_tensors_equal_the_in_place_prediction_and_carry_gradients(small_ghn):
    net = small_net()
    graph = architecture_graph(net, FM_EXAMPLE)
    tensors, report = predict_tensors(small_ghn, net, graph)
    assert set(tensors) == set(report.predicted) == {n for n, _ in net.named_parameters()}
    assert all(t.requires_grad for t in tensors.values())

    predict_parameters(small_ghn, net, graph)
    for name, param in net.named_parameters():
        assert torch.equal(param, tensors[name].detach()), name

    loss = functional_call(net, tensors, (torch.randn(4, 1, 28, 28),)).square().mean()
    loss.backward()
    assert small_ghn.decoder.conv[2].weight.grad.abs().sum() > 0


def test_skip_classifier_leaves_the_head_alone_and_says_so(small_ghn):
    net = small_net()
    head = net.classifier[-1]
    before = head.weight.detach().clone()
    _, report = small_ghn.predict(net, FM_EXAMPLE, skip_classifier=True)
    assert torch.equal(head.weight, before)
    skipped = {k for k, v in report.not_predicted.items() if "classifier" in v}
    assert skipped == {"classifier.1.weight", "classifier.1.bias"} or skipped == {
        "classifier.3.weight",
        "classifier.3.bias",
    }
    assert not torch.equal(net.stem[0].weight, build_network(net.spec).stem[0].weight)


def test_calibrating_batch_norm_measures_statistics_and_leaves_parameters_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    params = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(64, 1, 8, 8) * 3 + 2
    model.eval()
    assert calibrate_batch_norm(model, x.split(16)) == 1
    assert not model.training  # the mode is restored
    expected = model[0](x).mean(dim=(0, 2, 3))
    assert torch.allclose(model[1].running_mean, expected, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    assert model[1].momentum == 0.1
    assert calibrate_batch_norm(nn.Linear(2, 2), [torch.zeros(1, 2)]) == 0


def test_training_architectures_are_reproducible_rescaled_and_costed():
    a, b = train_spec(7, (8, 12), (4, 6)), train_spec(7, (8, 12), (4, 6))
    assert a == b and a.channels in (8, 12) and 4 <= a.n_cells <= 6
    assert a.reduce_at == sorted({a.n_cells // 3, 2 * a.n_cells // 3})
    assert train_spec(7, (8, 12), (4, 6), split="val") != a
    net = build_network(a)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert 0 < forward_mflops(net, torch.zeros(1, 1, 28, 28)) < 500


def test_the_pool_refuses_architectures_above_the_cost_cap(small_ghn):
    pool = ArchPool(lambda s: train_spec(s, (8,), (3, 4)), small_ghn, max_mflops=0.001)
    assert pool.get(0) is None and 0 in pool.refused
    pool = ArchPool(lambda s: train_spec(s, (8,), (3, 4)), small_ghn)
    net, graph, rows = pool.get(0)
    assert rows.shape == (graph.n_nodes, 4) and 0 in pool.entries


def test_a_tiny_meta_training_run_lowers_the_loss_on_held_out_images(fm):
    torch.set_num_threads(1)
    config = dataclasses.replace(PRESETS["tiny"], steps=40, val_every=0, n_archs=2)
    x, y = fm.x_train[:4000], fm.y_train[:4000]
    x_eval, y_eval = fm.x_val[:256], fm.y_val[:256]

    torch.manual_seed(config.seed)
    ghn = GHN3(config.ghn_config())
    pool = ArchPool(lambda s: train_spec(s, config.channels, config.cells), ghn, config.max_mflops)
    seeds = [s for s in range(config.n_archs) if pool.get(s) is not None]

    def held_out_loss(model: GHN3) -> float:
        total = 0.0
        with torch.no_grad():
            for seed in seeds:
                net, graph, rows = pool.get(seed)
                net.train()
                tensors, _ = predict_tensors(model, net, graph, shape_ind=rows)
                total += float(F.cross_entropy(functional_call(net, tensors, (x_eval,)), y_eval))
        return total / len(seeds)

    before = held_out_loss(ghn)
    trained, history = meta_train(config, x, y, x_eval, y_eval, init=ghn, log=lambda _: None)
    after = held_out_loss(trained)
    assert len(history["loss"]) == 40 and history["distinct_archs_seen"] <= 2
    print(f"held-out loss {before:.3f} -> {after:.3f}")
    assert after < before - 0.1, (before, after)


def test_a_written_manifest_has_the_committed_manifests_keys(small_ghn, tmp_path):
    import argparse

    from workers.ghn.metatrain import _write_manifest, save_ghn

    out = tmp_path / "ghn.pt"
    save_ghn(small_ghn, out)
    history = {"loss": [2.3, 2.2, 2.1], "val": [], "seconds": 1.0}
    _write_manifest(argparse.Namespace(preset="tiny"), PRESETS["tiny"], small_ghn, history, out)
    written = json.loads((tmp_path / "manifest.json").read_text())
    committed = json.loads((OURS_PATH.parent / "manifest.json").read_text())
    assert set(written) == set(committed)
    assert written["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert written["threads"] == torch.get_num_threads()
    assert written["torch"] == torch.__version__


def test_the_committed_ghn_has_its_manifest_and_predicts_a_held_out_network(fm):
    manifest = json.loads((OURS_PATH.parent / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(OURS_PATH.read_bytes()).hexdigest()
    assert manifest["command"].startswith("python -m workers.ghn.metatrain")
    assert manifest["final_loss"] < manifest["first_loss"]
    assert OURS_PATH.stat().st_size < 10_000_000

    ghn = load_ghn(str(OURS_PATH)).eval()
    spec = train_spec(3, PRESETS["small"].channels, (4, 6), split="test")
    x_eval, y_eval = fm.x_test[:500], fm.y_test[:500]
    [predicted] = evaluate_predictions(ghn, [spec], fm.x_train[:256], x_eval, y_eval)
    [random] = evaluate_predictions(None, [spec], fm.x_train[:256], x_eval, y_eval)
    assert predicted["accuracy"] > 0.4 > random["accuracy"], (predicted, random)
