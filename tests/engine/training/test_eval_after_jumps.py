"""Issue 10, item 9: a train job evaluates one step after each NiNo jump, never on it."""

from __future__ import annotations

import torch
from torch import nn

from workers.catalog import TrainSpec
from workers.data.datasets import ClassificationData
from workers.pipelines.train import run_training
from workers.training.loop import eval_steps, is_eval_step


def _blobs(n: int = 600, classes: int = 4, dim: int = 8) -> ClassificationData:
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, dim, generator=g)
    return ClassificationData("blobs", x[:500], y[:500], x[500:], y[500:], classes)


def test_an_evaluation_due_on_a_jump_step_moves_one_step_later():
    assert eval_steps(3000, 500, 1000) == [500, 1001, 1500, 2001, 2500, 3000]
    assert eval_steps(25, 5, 0) == [5, 10, 15, 20, 25]  # no jumps: the plain grid
    assert not is_eval_step(1000, 100, 1000) and is_eval_step(1001, 100, 1000)
    # A jump step the grid does not evaluate moves nothing.
    assert not is_eval_step(1001, 300, 1000)


def test_both_runs_of_a_nino_job_are_evaluated_right_after_each_jump():
    series: dict[str, list[int]] = {}

    def metrics(name: str, points: list[tuple[int, float]]) -> None:
        series.setdefault(name, []).extend(step for step, _ in points)

    spec = TrainSpec(dataset="blobs", steps=25, eval_every=5, period=10, batch_size=32,
                     accelerator="nino", compare=True, device="cpu")  # fmt: skip
    outcome = run_training(
        lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)),
        _blobs(), spec,
        metrics=metrics, progress=lambda fraction, message: None, save_weights=lambda s: None,
    )  # fmt: skip
    assert series["nino:nowcast"] == [10, 20]  # the jumps
    assert series["nino:test_accuracy"] == [5, 11, 15, 21, 25]
    assert series["plain:test_accuracy"] == [5, 11, 15, 21, 25]
    assert outcome.runs["nino"]["nowcasts"] == 2
    assert outcome.summary()["evaluated_after_jumps"] == 10
