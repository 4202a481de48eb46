"""Scaling of the context states and the horizon schedule, as the published NiNo does it.

NiNo sees the last ``ctx`` (5) snapshots of every parameter tensor. Each tensor is
standardised with a single mean and standard deviation taken over all its elements in all
snapshots together, so the relative movement between snapshots is kept. Predictions are
mapped back with the same two numbers.

The forecast horizon ``k`` (in units of the snapshot spacing) shrinks over training:
``k = round(linspace(max_horizon ** (1/p), 1, total_steps // period) ** p)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SCALE_EPS",
    "TensorScale",
    "fit_scales",
    "horizon_at",
    "horizon_schedule",
    "scale_states",
    "unscale",
]

#: Added to the std when scaling (not when un-scaling), as in the published code.
SCALE_EPS = 1e-6


@dataclass(frozen=True)
class TensorScale:
    """Mean and standard deviation of one parameter tensor over all context states (0-d)."""

    mean: Tensor
    std: Tensor


def _stacked(states: Sequence[Mapping[str, Tensor]], name: str) -> Tensor:
    return torch.stack([state[name].detach() for state in states])


def fit_scales(states: Sequence[Mapping[str, Tensor]]) -> dict[str, TensorScale]:
    """Per-tensor mean and (unbiased) std over all elements of all context states.

    ``states`` are the context snapshots, oldest first, each mapping parameter names to
    tensors; all must have the same names and shapes.
    """
    if not states:
        raise ValueError("at least one context state is needed")
    names = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if list(state) != names:
            raise ValueError(f"context state {i} has other parameter names than state 0")
    scales = {}
    for name in names:
        stacked = _stacked(states, name)
        scales[name] = TensorScale(mean=stacked.mean(), std=stacked.std())
    return scales


def scale_states(
    states: Sequence[Mapping[str, Tensor]],
    scales: Mapping[str, TensorScale] | None = None,
) -> tuple[list[dict[str, Tensor]], dict[str, TensorScale]]:
    """Standardise every context state with its tensor's scale: ``(w - mean) / (std + eps)``.

    Returns the scaled states (same structure as ``states``) and the scales used, fitted on
    ``states`` unless given. Pass the scales to :func:`unscale` for the prediction.
    """
    fitted = dict(scales) if scales is not None else fit_scales(states)
    scaled = [
        {
            name: (w.detach() - fitted[name].mean) / (fitted[name].std + SCALE_EPS)
            for name, w in state.items()
        }
        for state in states
    ]
    return scaled, fitted


def unscale(params: Mapping[str, Tensor], scales: Mapping[str, TensorScale]) -> dict[str, Tensor]:
    """Map predicted (scaled) parameters back: ``v * std + mean``.

    The published code leaves the epsilon out here, so this is not bit-exactly the inverse of
    :func:`scale_states`; we keep that to reproduce its jumps exactly.
    """
    return {name: v * scales[name].std + scales[name].mean for name, v in params.items()}


def horizon_schedule(
    total_steps: int, period: int, *, p: float = 2.0, max_horizon: int = 40
) -> list[int]:
    """Horizon ``k`` of each of the ``total_steps // period`` jumps, largest first.

    For 10k steps, period 1000, p=2: ``[40, 33, 26, 21, 16, 11, 8, 5, 3, 1]``. Rounding is
    numpy's (half to even), as in the published code.
    """
    jumps = total_steps // period
    if jumps < 1:
        raise ValueError(f"total_steps ({total_steps}) must be at least one period ({period})")
    bases = np.linspace(max_horizon ** (1.0 / p), 1.0, jumps)
    return [int(k) for k in np.round(bases**p)]


def horizon_at(
    step: int, total_steps: int, period: int, *, p: float = 2.0, max_horizon: int = 40
) -> int:
    """Horizon for the jump made at 0-based optimizer step ``step`` (e.g. 999, 1999, ...).

    Steps past the schedule keep its last horizon.
    """
    schedule = horizon_schedule(total_steps, period, p=p, max_horizon=max_horizon)
    return schedule[min(len(schedule) - 1, step // period)]
