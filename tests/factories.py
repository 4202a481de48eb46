"""Small builders for rows the tests need (no uploads involved)."""

from __future__ import annotations

from typing import Any

from webapp.architectures.models import Architecture, create_from_zoo
from webapp.jobs.models import Job
from workers.catalog.models import validate_args


def zoo_architecture(owner: Any, name: str = "mlp", args: dict | None = None) -> Architecture:
    """The owner's zoo architecture ``name``, added on first use."""
    wanted = validate_args(name, args or {})
    for existing in Architecture.objects.filter(owner=owner, zoo_name=name):
        if existing.zoo_args == wanted:
            return existing
    return create_from_zoo(owner, "", name, args or {})


def queued_job(owner: Any, architecture: Architecture | None = None) -> Job:
    architecture = architecture or zoo_architecture(owner)
    return Job.objects.create(owner=owner, kind="inspect", architecture=architecture)


def trained_job(
    owner: Any,
    *,
    steps: int = 200,
    eval_every: int = 50,
    runs: tuple[str, ...] = ("nino", "plain"),
    period: int = 100,
    name: str = "",
    parameters: dict | None = None,
    speed: float = 1.5,
) -> Job:
    """A succeeded train job with the series the train pipeline writes (``<run>:train_loss``
    every step, ``<run>:test_accuracy`` every ``eval_every``, ``nino:nowcast`` at each jump),
    through ``Job.record_metrics``; ``speed`` scales how fast the first run's loss falls (the
    plain run's rate is 1)."""
    import math

    architecture = zoo_architecture(owner)
    params = {
        "dataset": "fashion_mnist", "optimizer": "adamw", "lr": 0.006, "batch_size": 128,
        "steps": steps, "eval_every": eval_every, "seed": 0, "accelerator": runs[0],
        "period": period, "compare": len(runs) > 1, "targets": [0.7, 0.8], **(parameters or {}),
    }  # fmt: skip
    job = Job.objects.create(
        owner=owner, kind="train", architecture=architecture, parameters=params, name=name
    )
    job.claim("test-worker")
    for index, run in enumerate(runs):
        rate = speed if index == 0 else 1.0
        loss = [(s, 2.3 * math.exp(-rate * s / 60) + 0.05 * ((s * 7919) % 13) / 13)
                for s in range(1, steps + 1)]  # fmt: skip
        for start in range(0, len(loss), 20):  # written in batches, as the pipeline does
            job.record_metrics(f"{run}:train_loss", loss[start : start + 20])
        evals = range(eval_every, steps + 1, eval_every)
        job.record_metrics(
            f"{run}:test_accuracy", [(s, 0.95 * (1 - math.exp(-rate * s / 60))) for s in evals]
        )
        if run != "plain":
            jumps = range(period, steps + 1, period)
            job.record_metrics(f"{run}:nowcast", [(s, 1.0) for s in jumps])
    job.succeed("Trained")
    return job
