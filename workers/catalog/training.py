"""The train job's parameters and their defaults, written once.

``TrainSpec()`` holds the defaults (the published FM/16 protocol's); the API's validation, the
train form's initial values and the training pipeline all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

OPTIMIZERS: dict[str, str] = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainSpec:
    """What to train on and how. ``dataset`` names a built-in data set (see
    :mod:`workers.catalog.datasets`); ``dataset_id`` is an uploaded one's primary key."""

    dataset: str = ""
    dataset_id: int | None = None
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
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> TrainSpec:
        """The spec for a job's validated ``parameters``; unknown keys are an error, never
        silently dropped (a typo would otherwise train with a default)."""
        unknown = sorted(set(parameters) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"Unknown train parameter(s): {', '.join(unknown)}; "
                f"known: {', '.join(cls.field_names())}."
            )
        return cls(**parameters)


DEFAULTS = TrainSpec()
