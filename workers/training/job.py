"""One ``train`` job, as the engine sees it: build, train (accelerated, and optionally the plain
baseline on the same batches), report metrics live, and hand back the trained weights.

Pure torch; the Celery task adapter supplies the model builder, the data and the reporting
functions that write to the database.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workers.data.datasets import TrainingData
from workers.training.loop import Callbacks, make_optimizer, resolve_device, train

# Accelerator name → published checkpoint it loads (None: the plain optimizer).
ACCELERATOR_CHECKPOINTS: dict[str, str | None] = {
    "none": None,
    "nino": "nino_no_posw",
    "ours": "nino_ours",
    "wnn": "nino_mlp",
}


@dataclass(frozen=True)
class TrainSpec:
    """The validated parameters of a train job (see ``webapp.jobs.parameters``)."""

    optimizer: str = "adamw"
    lr: float = 0.006
    weight_decay: float = 0.0
    batch_size: int = 128
    steps: int = 10_000
    eval_every: int = 100
    seed: int = 0
    accelerator: str = "nino"
    period: int = 1000
    compare: bool = False
    targets: list[float] = field(default_factory=list)
    device: str = "auto"

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> TrainSpec:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in parameters.items() if k in known})


@dataclass
class Reporter:
    """Where a run's progress goes. ``stop`` is asked every few steps (cooperative cancel)."""

    metrics: Callable[[str, list[tuple[int, float]]], None]
    stop: Callable[[float, str], bool]


@dataclass
class TrainOutcome:
    """Per-run summaries, the trained weights of the first (accelerated) run, and whether the
    person cancelled."""

    runs: dict[str, dict[str, Any]]
    state_dict: dict[str, torch.Tensor]
    cancelled: bool


class _RunReport:
    """Turns one run's loop callbacks into batched metric writes, jump marks and stop checks."""

    def __init__(self, report: Reporter, label: str, index: int, runs: int, spec: TrainSpec,
                 metric: str, optimizer: Any) -> None:  # fmt: skip
        self.report, self.label, self.spec, self.metric = report, label, spec, metric
        self.index, self.runs, self.optimizer = index, runs, optimizer
        self.pending: list[tuple[int, float]] = []
        self.step = 0
        self.jumps_marked = 0

    def on_step(self, step: int, loss: float) -> None:
        self.step = step
        self.pending.append((step, loss))
        if len(self.pending) >= 20:  # one database write per 20 points
            self.flush()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.report.metrics(f"{self.label}:test_{self.metric}", [(step, metrics[self.metric])])
        self.mark_jumps()

    def stop(self) -> bool:
        fraction = (self.index + self.step / self.spec.steps) / self.runs
        return self.report.stop(
            fraction, f"{self.label}: step {self.step:,} of {self.spec.steps:,}"
        )

    def mark_jumps(self) -> None:
        jumps = getattr(self.optimizer, "jumps", 0)
        if jumps > self.jumps_marked:
            steps = range(self.jumps_marked + 1, jumps + 1)
            self.report.metrics(
                f"{self.label}:nowcast", [(j * self.spec.period, 1.0) for j in steps]
            )
            self.jumps_marked = jumps

    def flush(self) -> None:
        if self.pending:
            self.report.metrics(f"{self.label}:train_loss", self.pending[:])
            self.pending.clear()
        self.mark_jumps()


def _optimizer_for(
    accelerator: str, model: nn.Module, spec: TrainSpec, device: torch.device
) -> Any:
    optimizer = make_optimizer(
        spec.optimizer, model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay
    )
    checkpoint = ACCELERATOR_CHECKPOINTS[accelerator]
    if checkpoint is None:
        return optimizer
    from workers.nino import load_model
    from workers.nino.optimizer import NiNo, NowcastConfig

    config = NowcastConfig(period=spec.period, max_steps=max(spec.steps, spec.period))
    return NiNo(optimizer, model, load_model(checkpoint).to(device), config)


def run_training(
    build: Callable[[], nn.Module], data: TrainingData, spec: TrainSpec, report: Reporter
) -> TrainOutcome:
    """Train the model ``build()`` makes; with ``spec.compare`` also the plain optimizer.

    Both runs start from the same initial weights and see the same batches (paired). Series
    are named ``<run>:train_loss``, ``<run>:test_accuracy`` (or ``test_perplexity``) and
    ``<run>:nowcast`` (1.0 at each jump), ``<run>`` being the accelerator's name or ``plain``.
    """
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    initial = build()
    runs = [spec.accelerator] + (["none"] if spec.compare and spec.accelerator != "none" else [])
    metric = "accuracy" if data.info.task == "classification" else "perplexity"
    summaries: dict[str, dict[str, Any]] = {}
    first_state: dict[str, torch.Tensor] = {}
    for index, accelerator in enumerate(runs):
        label = "plain" if accelerator == "none" else accelerator
        model = copy.deepcopy(initial).to(device)
        optimizer = _optimizer_for(accelerator, model, spec, device)
        run = _RunReport(report, label, index, len(runs), spec, metric, optimizer)
        result = train(
            model,
            data,
            optimizer=optimizer,
            batch_size=spec.batch_size,
            steps=spec.steps,
            seed=spec.seed,
            eval_every=spec.eval_every,
            targets=spec.targets,
            device=device,
            callbacks=Callbacks(
                on_step=run.on_step, on_eval=run.on_eval, should_stop=run.stop, stop_every=25
            ),
        )
        run.flush()
        summaries[label] = {**result.to_dict(), "nowcasts": getattr(optimizer, "jumps", 0)}
        if index == 0:
            first_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if result.stopped_early:
            return TrainOutcome(runs=summaries, state_dict=first_state, cancelled=True)
    return TrainOutcome(runs=summaries, state_dict=first_state, cancelled=False)
