"""The nowcasting optimizer: the published schedule, the golden FM/16 jump end to end with our
own graph and positional encodings, and resuming that jumps exactly like an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.paths import SHARED
from workers.errors import ModelError
from workers.nino.optimizer import NiNo, NowcastConfig
from workers.zoo.build import build_model

GOLDEN = Path(os.environ.get("NINO_GOLDEN_PATH", SHARED / "golden" / "golden_nino_fm16.pt"))
CHECKPOINT = SHARED / "pretrained" / "nino" / "nino_no_posw.pt"
needs_checkpoint = pytest.mark.skipif(
    not CHECKPOINT.exists(), reason=f"published NiNo checkpoint not found at {CHECKPOINT}"
)


@pytest.fixture(scope="module")
def nino_model():
    from workers.nino import load_model

    return load_model(str(CHECKPOINT))


def tiny_run(nino_model, steps: int, config: NowcastConfig, state=None, seed: int = 0):
    """A small MLP on fixed random batches; returns the model and the wrapped optimizer."""
    torch.manual_seed(seed)
    model = build_model("mlp", {"in_features": 8, "hidden": [16], "num_classes": 3})
    optimizer = NiNo(torch.optim.AdamW(model.parameters(), lr=1e-2), model, nino_model, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    data = torch.Generator().manual_seed(1234)
    batches = [(torch.randn(32, 8, generator=data), torch.randint(0, 3, (32,), generator=data))
               for _ in range(64)]  # fmt: skip
    for _ in range(steps):
        x, y = batches[optimizer.step_count % len(batches)]
        optimizer.zero_grad()
        if not optimizer.next_step_is_jump:
            nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


@needs_checkpoint
def test_jumps_replace_every_period_th_step_and_snapshots_follow_the_context_spacing(nino_model):
    config = NowcastConfig(period=10, ctx=5, max_steps=50)
    model, optimizer = tiny_run(nino_model, 25, config)
    assert optimizer.jumps == 2  # at steps 10 and 20
    assert len(optimizer.history) == 2  # snapshots at steps 22 and 24 since the last jump
    assert optimizer.base.state_dict()["state"][0]["step"].item() == 23  # 25 steps - 2 jumps


@needs_checkpoint
def test_timings_count_every_jump_and_snapshot_and_stay_out_of_the_saved_state(nino_model):
    config = NowcastConfig(period=10, ctx=5, max_steps=50)
    _, optimizer = tiny_run(nino_model, 25, config)
    timings = optimizer.timings
    assert len(timings.jump_s_each) == optimizer.jumps == 2
    assert all(t > 0 for t in timings.jump_s_each)
    assert timings.jump_s == sum(timings.jump_s_each)
    assert timings.snapshots == 12  # every 2nd step of 25 (period 10 / ctx 5)
    assert timings.snapshot_s > 0
    assert timings.to_dict()["jump_s_each"] == timings.jump_s_each
    assert "timings" not in optimizer.state_dict()


@needs_checkpoint
def test_a_resumed_run_nowcasts_exactly_like_an_uninterrupted_one(nino_model):
    config = NowcastConfig(period=10, ctx=5, max_steps=50)
    straight, _ = tiny_run(nino_model, 27, config)
    first, optimizer = tiny_run(nino_model, 13, config)
    saved = {"model": first.state_dict(), "optimizer": optimizer.state_dict()}
    assert len(saved["optimizer"]["history"]) == 1  # the snapshot at step 12 travels along
    resumed, _ = tiny_run(nino_model, 14, config, state=saved, seed=99)
    pairs = zip(straight.named_parameters(), resumed.named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        assert torch.equal(a, b), name


@needs_checkpoint
def test_a_model_the_graph_cannot_represent_is_refused_by_name(nino_model):
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))
    with pytest.raises(ModelError, match="LSTM"):
        NiNo(torch.optim.Adam(model.parameters()), model, nino_model)


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.exists():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return torch.load(GOLDEN, weights_only=True)


def first_fm16_jump_error(nino_model, golden, use_golden_pe: bool) -> float:
    """Size of (our jump - published jump) relative to the published jump, over all params."""
    model = build_model("cnn")
    optimizer = NiNo(torch.optim.AdamW(model.parameters(), lr=0.006), model, nino_model)
    assert torch.equal(optimizer.graph.edge_index, golden["graph"]["edge_index"])
    if use_golden_pe:
        optimizer.pe = golden["graph"]["lpe"]
    names = [name for name, _ in model.named_parameters()]
    # Our cnn names its layers differently; the published parameters come in the same order.
    context = [dict(zip(names, state.values(), strict=True)) for state in golden["context"]]
    predicted = optimizer.nowcast(context, k=40)
    expected = dict(zip(names, golden["pred"][40].values(), strict=True))

    def flat(state: dict) -> torch.Tensor:
        return torch.cat([state[n].flatten() for n in names])

    published_jump = flat(expected) - flat(context[-1])
    return ((flat(predicted) - flat(expected)).norm() / published_jump.norm()).item()


@needs_checkpoint
def test_the_first_fm16_jump_matches_the_published_one_given_its_positional_encodings(
    nino_model, golden
):
    """Our graph, scaling, model and un-scaling reproduce the published jump to float32."""
    assert first_fm16_jump_error(nino_model, golden, use_golden_pe=True) < 1e-5


@needs_checkpoint
def test_the_first_fm16_jump_matches_the_published_one_with_our_own_encodings(nino_model, golden):
    """The published encodings carry random signs and arbitrary bases of degenerate
    eigenspaces, so ours differ; the jump they give differs by 0.25% (measured; once ~1%
    under load, where the eigensolver picked another basis)."""
    assert first_fm16_jump_error(nino_model, golden, use_golden_pe=False) < 0.02


@needs_checkpoint
def test_learning_rate_schedulers_drive_the_base_optimizer(nino_model):
    model = build_model("mlp", {"in_features": 8, "hidden": [16], "num_classes": 3})
    optimizer = NiNo(torch.optim.SGD(model.parameters(), lr=0.1), model, nino_model,
                     NowcastConfig(period=10, max_steps=20))  # fmt: skip
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer.base, step_size=5, gamma=0.5)
    for _ in range(10):
        if not optimizer.next_step_is_jump:
            model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    assert optimizer.jumps == 1


@needs_checkpoint
def test_a_decoder_transformer_gets_nowcast_too(nino_model):
    args = {"vocab_size": 16, "context": 8, "d_model": 8, "n_layers": 1, "n_heads": 2}
    model = build_model("transformer", args)
    optimizer = NiNo(torch.optim.AdamW(model.parameters(), lr=1e-3), model, nino_model,
                     NowcastConfig(period=10, max_steps=20))  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = torch.randint(0, 16, (4, 8))
    for _ in range(10):
        if not optimizer.next_step_is_jump:
            logits = model(tokens)
            nn.functional.cross_entropy(logits.reshape(-1, 16), tokens.reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert optimizer.jumps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
