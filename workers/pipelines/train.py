"""The ``train`` job's engine entry point: train (accelerated, and optionally the plain
baseline on the same batches), report metrics and progress live, hand back the weights.

Pure torch; the Celery adapter (``workers.tasks.train``) supplies the model builder, the data
and the callbacks that write to the database. Cancelling works one way, everywhere: the
``progress`` callback raises ``workers.errors.Cancelled``; this pipeline saves the weights it
has and lets the exception go on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workers.catalog import TrainSpec, get_accelerator
from workers.data.datasets import TrainingData
from workers.errors import Cancelled, ProgressFn
from workers.tensors import cpu_state_dict
from workers.training.loop import Callbacks, make_optimizer, resolve_device, train

MetricsFn = Callable[[str, list[tuple[int, float]]], None]
WeightsFn = Callable[[dict[str, torch.Tensor]], None]


@dataclass
class TrainOutcome:
    """Per-run summaries (``{label: TrainResult.to_dict() + nowcasts}``), the first
    (accelerated) run first, and the summary a job stores (:meth:`summary`)."""

    runs: dict[str, dict[str, Any]]
    data: dict[str, Any]
    targets: list[float]
    metric: str
    # Evaluations due on a multiple of it (a jump step) were made one step later; 0: none.
    jump_period: int = 0

    def summary(self) -> dict[str, Any]:
        """The job's result: the data set, per run the final metrics and steps to each
        target, and the speed-up in steps of the accelerated run over the plain one."""
        summary: dict[str, Any] = {"dataset": self.data, "runs": self.runs}
        if self.jump_period:
            summary["evaluated_after_jumps"] = self.jump_period
        plain = self.runs.get("plain")
        accelerated = next((label for label in self.runs if label != "plain"), None)
        if plain and accelerated:
            speedups = {}
            for target in self.targets:
                a = self.runs[accelerated]["steps_to_target"].get(str(float(target)))
                b = plain["steps_to_target"].get(str(float(target)))
                speedups[str(target)] = round(b / a, 3) if a and b else None
            summary["speedup"] = speedups
        return summary

    def message(self) -> str:
        first = next(iter(self.runs.values()))
        final = first["final_metrics"].get(self.metric)
        return f"Trained {first['steps_done']:,} steps; test {self.metric} {final:.4g}"


class _RunReport:
    """Turns one run's loop callbacks into batched metric writes, jump marks and progress."""

    def __init__(self, metrics: MetricsFn, progress: ProgressFn, label: str, index: int,
                 runs: int, spec: TrainSpec, metric: str, optimizer: Any) -> None:  # fmt: skip
        self.metrics, self.progress, self.label, self.spec = metrics, progress, label, spec
        self.metric, self.index, self.runs, self.optimizer = metric, index, runs, optimizer
        self.pending: list[tuple[int, float]] = []
        self.jumps_marked = 0

    def on_step(self, step: int, loss: float) -> None:
        self.pending.append((step, loss))
        if len(self.pending) >= 20:  # one database write per 20 points
            self.flush()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics(f"{self.label}:test_{self.metric}", [(step, metrics[self.metric])])
        self.mark_jumps()

    def on_progress(self, step: int) -> None:
        fraction = (self.index + step / self.spec.steps) / self.runs
        self.progress(fraction, f"{self.label}: step {step:,} of {self.spec.steps:,}")

    def mark_jumps(self) -> None:
        jumps = getattr(self.optimizer, "jumps", 0)
        if jumps > self.jumps_marked:
            steps = range(self.jumps_marked + 1, jumps + 1)
            self.metrics(f"{self.label}:nowcast", [(j * self.spec.period, 1.0) for j in steps])
            self.jumps_marked = jumps

    def flush(self) -> None:
        if self.pending:
            self.metrics(f"{self.label}:train_loss", self.pending[:])
            self.pending.clear()
        self.mark_jumps()


def make_accelerated_optimizer(
    accelerator: str,
    model: nn.Module,
    spec: TrainSpec,
    device: torch.device | str = "cpu",
    *,
    checkpoint: str | None = None,
    example: torch.Tensor | None = None,
) -> Any:
    """The spec's base optimizer, wrapped by the named accelerator of ``workers.catalog``
    (NiNo with the accelerator's meta-model, nowcasting every ``spec.period`` steps).

    ``checkpoint`` (a path or a name ``workers.nino.load_model`` resolves) replaces the
    accelerator's meta-model — for trying other weights with the same settings.
    ``example``: an input batch the parameter graph traces the data flow on; without it the
    shape is guessed from the first layer, which an exported (``.pt2``) program pins down.
    """
    optimizer = make_optimizer(
        spec.optimizer, model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay
    )
    checkpoint = checkpoint or get_accelerator(accelerator).checkpoint
    if checkpoint is None:
        return optimizer
    from workers.nino import load_model
    from workers.nino.optimizer import NiNo, NowcastConfig

    config = NowcastConfig(period=spec.period, max_steps=max(spec.steps, spec.period))
    return NiNo(optimizer, model, load_model(checkpoint).to(device), config, example=example)


def run_training(
    build: Callable[[], nn.Module],
    data: TrainingData,
    spec: TrainSpec,
    *,
    metrics: MetricsFn,
    progress: ProgressFn,
    save_weights: WeightsFn,
) -> TrainOutcome:
    """Train the model ``build()`` makes; with ``spec.compare`` also the plain optimizer.

    Both runs start from the same initial weights and see the same batches (paired), and are
    evaluated on the same steps: every ``spec.eval_every``, a jump step moved one later.
    Series
    are named ``<run>:train_loss``, ``<run>:test_accuracy`` (or ``test_perplexity``) and
    ``<run>:nowcast`` (1.0 at each jump), ``<run>`` being the accelerator's name or ``plain``.
    ``progress(fraction, message)`` is called every 25 steps and may raise ``Cancelled``.
    ``save_weights`` receives the first (accelerated) run's weights once: at the end, or
    when cancelled (then as far as that run got) before ``Cancelled`` propagates.
    """
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    initial = build()
    runs = [spec.accelerator] + (["none"] if spec.compare and spec.accelerator != "none" else [])
    metric = "accuracy" if data.info.task == "classification" else "perplexity"
    # Evaluations due on a jump step (1000, 2000, ...) happen one step later, in every run of
    # the job: on the jump itself the metric shows the published post-jump dip, which one
    # base step mostly repairs (bench/nino.py measures so too).
    jump_period = spec.period if spec.accelerator != "none" else 0
    summaries: dict[str, dict[str, Any]] = {}
    first: nn.Module | None = None
    for index, accelerator in enumerate(runs):
        label = "plain" if accelerator == "none" else accelerator
        model = copy.deepcopy(initial).to(device)
        first = first or model
        # The data's own batch: the traced graph then sees the shapes training will use.
        optimizer = make_accelerated_optimizer(
            accelerator, model, spec, device, example=data.example_batch(1).to(device)
        )
        run = _RunReport(metrics, progress, label, index, len(runs), spec, metric, optimizer)
        try:
            result = train(
                model,
                data,
                optimizer=optimizer,
                batch_size=spec.batch_size,
                steps=spec.steps,
                seed=spec.seed,
                eval_every=spec.eval_every,
                jump_period=jump_period,
                targets=spec.targets,
                device=device,
                callbacks=Callbacks(
                    on_step=run.on_step, on_eval=run.on_eval, on_progress=run.on_progress,
                    stop_every=25,
                ),
            )  # fmt: skip
        except Cancelled:
            run.flush()
            save_weights(cpu_state_dict(first))
            raise
        run.flush()
        summaries[label] = {**result.to_dict(), "nowcasts": getattr(optimizer, "jumps", 0)}
    assert first is not None
    save_weights(cpu_state_dict(first))
    return TrainOutcome(
        runs=summaries, data=data.info.to_dict(), targets=list(spec.targets), metric=metric,
        jump_period=jump_period,
    )  # fmt: skip
