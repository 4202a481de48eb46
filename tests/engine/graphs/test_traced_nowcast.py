"""Nowcasting with traced graphs: NiNo moves what the graph covers and leaves the rest to the
base optimizer; the per-parameter WNN+ baseline covers every parameter, whatever the graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.engine.nino.published import require_checkpoint
from workers.errors import ModelError
from workers.nino import load_model
from workers.nino.optimizer import NiNo, NowcastConfig

CONFIG = NowcastConfig(period=10, ctx=5, max_steps=50)


class PReLUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 7, stride=2, padding=3)  # a 7x7 stem: 49 positions
        self.act = nn.PReLU(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.act(self.stem(x)).mean((2, 3)))


def run_until_jump(model: nn.Module, meta_name: str) -> tuple[NiNo, dict, dict]:
    """Train to just before the first jump, then jump; parameters before and after it."""
    require_checkpoint(meta_name)
    torch.manual_seed(0)
    optimizer = NiNo(torch.optim.AdamW(model.parameters(), lr=1e-2), model,
                     load_model(meta_name), CONFIG)  # fmt: skip
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 3, (8,))
    while not optimizer.next_step_is_jump:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert optimizer.step() is True  # the jump
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return optimizer, before, after


def test_nino_nowcasts_the_covered_parameters_and_leaves_the_stem_and_prelu_to_the_base():
    optimizer, before, after = run_until_jump(PReLUNet(), "nino_no_posw")
    coverage = optimizer.coverage
    assert [e["name"] for e in coverage["left"]] == ["stem.weight", "act.weight"]
    assert coverage["nowcast"] == coverage["total"] - 4 * 49 - 4
    for name in ("stem.weight", "act.weight"):
        assert torch.equal(before[name], after[name]), name
    for name in ("stem.bias", "head.weight", "head.bias"):
        assert not torch.equal(before[name], after[name]), name


def test_the_wnn_baseline_covers_every_parameter_of_a_model_with_a_7x7_stem_and_prelu():
    optimizer, before, after = run_until_jump(PReLUNet(), "nino_mlp")
    assert optimizer.coverage["left"] == []
    assert set(optimizer.names) == {n for n, _ in optimizer.model.named_parameters()}
    assert all(not torch.equal(before[n], after[n]) for n in before)


class EinsumAttention(nn.Module):
    """Attention written with einsum, which the parameter graph refuses by name."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.qkv, self.proj = nn.Embedding(11, 8), nn.Linear(8, 24), nn.Linear(8, 8)

    def forward(self, idx):
        q, k, v = self.qkv(self.wte(idx)).split(8, dim=-1)
        att = torch.softmax(torch.einsum("btd,bsd->bts", q, k), dim=-1)
        return self.proj(torch.einsum("bts,bsd->btd", att, v))


def test_the_wnn_baseline_covers_a_model_the_graph_refuses_and_nino_says_why_not():
    require_checkpoint("nino_mlp")
    require_checkpoint("nino_no_posw")
    model = EinsumAttention()
    wnn = NiNo(torch.optim.AdamW(model.parameters()), model, load_model("nino_mlp"), CONFIG)
    assert wnn.coverage["nowcast"] == sum(p.numel() for p in model.parameters())
    with pytest.raises(ModelError, match="einsum"):
        NiNo(torch.optim.AdamW(model.parameters()), model, load_model("nino_no_posw"), CONFIG)
