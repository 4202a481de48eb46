"""Measuring a prediction: predict → calibrate BatchNorm → evaluate, written once.

Used by the predict job (``workers.pipelines.predict``), meta-training's validation
(``workers.ghn.metatrain``) and ``bench/ghn.py``, so the three report the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from workers.ghn.predict import PredictionReport, predict_parameters
from workers.graphs.arch.graph import architecture_graph
from workers.training.loop import calibrate_batch_norm

if TYPE_CHECKING:
    from workers.ghn.model import GHN3

# Training images whose statistics a predicted model's BatchNorm layers get before evaluation.
CALIBRATION_IMAGES = 512


@dataclass
class Prepared:
    """A freshly built model, with the GHN's parameters when one predicted them."""

    model: nn.Module
    report: PredictionReport | None  # None: default (random) initialisation
    seconds: float  # graph + prediction, 0.0 without a GHN


def prepare(
    build: Callable[[], nn.Module],
    ghn: GHN3 | None,
    example: Tensor | None = None,
    calibration: Iterable[Tensor] | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Prepared:
    """``build()`` under ``torch.manual_seed(seed)``; its parameters predicted by ``ghn``
    (none: the default initialisation, the baseline); then, with ``calibration`` batches, its
    BatchNorm statistics measured on them (a prediction carries none).

    ``example`` is the input batch the architecture graph is traced with.
    """
    torch.manual_seed(seed)
    model = build().to(device)
    report, seconds = None, 0.0
    if ghn is not None:
        start = time.perf_counter()
        graph = architecture_graph(model, None if example is None else example.to(device))
        with torch.no_grad():
            report = predict_parameters(ghn, model, graph)
        seconds = time.perf_counter() - start
    if calibration is not None:
        calibrate_batch_norm(model, calibration, device=device)
    return Prepared(model, report, seconds)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``x``/``y``, in batches, no gradient."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), batch):
            logits = model(x[start : start + batch])
            correct += int((logits.argmax(1) == y[start : start + batch]).sum())
    return correct / max(1, len(y))
