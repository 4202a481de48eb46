"""A plain training loop for classification and character-level language models.

``train`` runs a fixed number of optimizer steps over reshuffled epochs of a data set from
``workers.data``, evaluates on the held-out split every ``eval_every`` steps, reports through
callbacks, and stops early when ``should_stop`` says so (cooperative cancel).

Replacing steps (NiNo)
----------------------
``optimizer`` is a name for ``make_optimizer``, or any object with a ``step()`` method (a
``torch.optim.Optimizer``, or a wrapper such as ``workers.nino.NiNo``). Before each step the
loop reads the optimizer's optional ``next_step_is_jump`` attribute (missing means False):

- False: the loop computes the loss on the step's batch and its gradients, then calls
  ``optimizer.step()``.
- True: the loop clears the gradients and calls ``optimizer.step()`` with no forward or
  backward pass. That is how NiNo replaces every 1000th Adam step with a jump to predicted
  parameters.

The batch of a replaced step is still drawn and dropped, so step ``t`` sees the same batch
in a plain and a NiNo run with the same seed. The wrapper counts its own steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

# task_loss is defined with the data (the targets' layout is the data's); importing it from
# here keeps working.
from workers.data.datasets import Batch, TrainingData, task_loss

OPTIMIZERS = ("adamw", "adam", "sgd")


class SteppingOptimizer(Protocol):
    """What the loop needs from an optimizer: ``step()``; see the module doc for jumps."""

    def step(self) -> Any:
        """Update the parameters (from their gradients, unless this step is a jump)."""
        ...


def make_optimizer(
    name: str,
    params: Any,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """A torch optimizer by name: ``"adamw"``, ``"adam"`` or ``"sgd"`` (with ``momentum``)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None means CUDA when available, else CPU; asking for missing CUDA is an error.

    CUDA is only queried here, inside the call, never at import, so a worker process can
    fork before touching the GPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available on this worker.")
    return resolved


@dataclass
class Callbacks:
    """Hooks the loop calls; all optional.

    - ``on_step(step, loss)`` after every ``step_every``-th step (training loss of that step;
      skipped on a replaced step, which has no loss).
    - ``on_eval(step, metrics)`` after every evaluation (see ``evaluate`` for the keys).
    - ``on_progress(step)`` every ``stop_every`` steps: a place to report progress, and to
      raise (``workers.errors.Cancelled``, say) to abandon the run; the loop does not catch it.
    - ``should_stop()`` every ``stop_every`` steps; true ends training early and returns what
      it has (``stopped_early``) — an early-stopping rule of the caller's.
    """

    on_step: Callable[[int, float], None] | None = None
    on_eval: Callable[[int, dict[str, float]], None] | None = None
    on_progress: Callable[[int], None] | None = None
    should_stop: Callable[[], bool] | None = None
    step_every: int = 10
    stop_every: int = 10


@dataclass
class TrainResult:
    """What a training run did; ``to_dict`` gives a JSON-ready summary.

    ``steps_to_target`` maps each target (accuracy for classification, perplexity for
    char-lm) to the first evaluated step that reached it, or None. ``losses`` holds
    ``(step, training loss)`` for every step with a backward pass; ``evals`` every
    ``(step, metrics)``. ``wall_time_s`` covers the whole call, ``eval_time_s`` its part
    spent evaluating.
    """

    steps_done: int
    stopped_early: bool
    final_metrics: dict[str, float]
    steps_to_target: dict[float, int | None]
    wall_time_s: float
    eval_time_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def to_dict(self, *, with_curves: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; loss and eval curves only with ``with_curves``."""
        out = asdict(self)
        out["steps_to_target"] = {str(k): v for k, v in self.steps_to_target.items()}
        if not with_curves:
            del out["losses"], out["evals"]
        return out


@torch.no_grad()
def calibrate_batch_norm(
    model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu"
) -> int:
    """Re-estimate BatchNorm running statistics from a few input batches; parameters stay.

    Predicted parameters come without running statistics, so before a predicted network is
    evaluated its statistics are measured on training inputs (a cumulative average in train
    mode, no gradient, no parameter change). Returns the number of BatchNorm layers reset.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training = model.training
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        for x in batches:
            model(x.to(device))
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


def evaluate(
    model: nn.Module,
    data: TrainingData,
    *,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    amp: bool = False,
) -> dict[str, float]:
    """Metrics on the whole held-out split, in batches, without gradients.

    Classification: ``{"accuracy", "loss"}``; char-lm: ``{"loss", "perplexity"}`` with the
    loss per character. ``max_batches`` caps the work for large text splits. The model is put
    in eval mode and back in the mode it was in.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad(), _autocast(device, amp):
            for i, (x, y) in enumerate(data.eval_batches(batch_size)):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = model(x)
                # Sum, not mean, so a short last batch is weighted by its size.
                loss_sum += float(
                    F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]).float(),
                        y.reshape(-1),
                        reduction="sum",
                    )
                )
                correct += int((logits.argmax(-1) == y).sum())
                count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"the data set {data.info.name!r} has no evaluation examples")
    loss = loss_sum / count
    if data.info.task == "classification":
        return {"accuracy": correct / count, "loss": loss}
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def _reached(task: str, metrics: dict[str, float], target: float) -> bool:
    if task == "classification":
        return metrics["accuracy"] >= target
    return metrics["perplexity"] <= target


def _autocast(device: torch.device, amp: bool) -> Any:
    # bfloat16 needs no gradient scaler (unlike float16), which keeps step wrappers simple; it is
    # supported by current GPUs and by CPU autocast.
    if not amp:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def is_eval_step(step: int, every: int, jump_period: int = 0) -> bool:
    """Whether ``train`` evaluates after ``step``: every ``every`` steps, except that a multiple
    of ``jump_period`` (a NiNo jump step) is evaluated one step later instead."""
    if every <= 0:
        return False
    if jump_period > 0 and step % jump_period == 0:
        return False
    if step % every == 0:
        return True
    previous = step - 1  # the jump step this one stands in for
    if jump_period <= 0 or previous <= 0:
        return False
    return previous % jump_period == 0 and previous % every == 0


def eval_steps(steps: int, every: int, jump_period: int = 0) -> list[int]:
    """The steps ``train`` evaluates after, in order (the final step is evaluated too)."""
    grid = [s for s in range(1, steps + 1) if is_eval_step(s, every, jump_period)]
    return grid if grid and grid[-1] == steps else [*grid, steps]


def _batches(data: TrainingData, batch_size: int, seed: int) -> Iterator[Batch]:
    epoch = 0
    while True:
        yield from data.train_batches(batch_size, seed, epoch)
        epoch += 1


def train(
    model: nn.Module,
    data: TrainingData,
    *,
    optimizer: str | SteppingOptimizer = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    steps: int = 1000,
    seed: int = 0,
    eval_every: int = 100,
    eval_batch_size: int = 1000,
    eval_max_batches: int | None = None,
    eval_at_start: bool = False,
    jump_period: int = 0,
    targets: Sequence[float] = (),
    grad_clip: float | None = None,
    device: str | torch.device | None = "cpu",
    amp: bool = False,
    callbacks: Callbacks | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` for ``steps`` optimizer steps; return a ``TrainResult``.

    Batches come from ``data.train_batches(batch_size, seed, epoch)`` epoch after epoch, so
    the same ``seed`` gives the same batches (paired runs). The model's initial weights are
    the caller's business (seed torch before building it); ``seed`` is also passed to
    ``torch.manual_seed`` so dropout-style randomness is paired too.

    ``optimizer`` is a name for ``make_optimizer`` (with ``lr`` and ``weight_decay``), a
    torch optimizer, or a wrapper that may replace steps (module doc). Every
    ``eval_every`` steps, and once at the end, ``evaluate`` runs on the held-out split;
    with ``jump_period`` (NiNo's period) an evaluation that falls on a multiple of it, a jump
    step, moves one step later (see :func:`eval_steps`), as in ``bench/nino.py``: a nowcast
    dips on the jump step and recovers within a few, so measuring on the jump understates it.
    Pass the same ``jump_period`` to a plain run compared with a NiNo one, so both are
    measured on the same steps.
    ``targets`` are accuracies (classification) or perplexities (char-lm) whose first
    crossing is recorded. ``grad_clip`` clips the gradient norm. ``device`` is ``"cpu"``,
    ``"cuda"``, or ``"auto"``; the model is moved there. ``amp`` turns on bfloat16 autocast.

    When ``callbacks.should_stop()`` returns true the loop returns at once with what it has
    (``stopped_early=True``; ``final_metrics`` is the last evaluation, without a new one).
    The model is left in train mode.
    """
    started = time.perf_counter()
    callbacks = callbacks or Callbacks()
    device = resolve_device(device)
    model.to(device)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, model.parameters(), lr=lr, weight_decay=weight_decay)
    task = data.info.task
    torch.manual_seed(seed)

    result = TrainResult(
        steps_done=0,
        stopped_early=False,
        final_metrics={},
        steps_to_target={float(t): None for t in targets},
        wall_time_s=0.0,
        eval_time_s=0.0,
    )

    def run_eval(step: int) -> None:
        t0 = time.perf_counter()
        metrics = evaluate(
            model,
            data,
            batch_size=eval_batch_size,
            device=device,
            max_batches=eval_max_batches,
            amp=amp,
        )
        result.eval_time_s += time.perf_counter() - t0
        result.evals.append((step, metrics))
        result.final_metrics = metrics
        for target, hit in result.steps_to_target.items():
            if hit is None and _reached(task, metrics, target):
                result.steps_to_target[target] = step
        if callbacks.on_eval is not None:
            callbacks.on_eval(step, metrics)

    # Losses stay on the device until read in bulk: reading one is a GPU sync per step.
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if pending:
            values = torch.stack([value for _, value in pending]).tolist()
            result.losses.extend((s, v) for (s, _), v in zip(pending, values, strict=True))
            pending.clear()

    model.train()
    if eval_at_start:
        run_eval(0)
    batches = _batches(data, batch_size, seed)
    for step in range(1, steps + 1):
        x, y = next(batches)
        if not getattr(optimizer, "next_step_is_jump", False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            model.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                loss = task_loss(model(x), y)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            pending.append((step, loss.detach()))
            if step % callbacks.step_every == 0:
                flush()
                if callbacks.on_step is not None:
                    callbacks.on_step(step, result.losses[-1][1])
        else:
            # A replaced step (NiNo jump): no gradients, and none left over to confuse it.
            model.zero_grad(set_to_none=True)
            optimizer.step()
        result.steps_done = step
        if is_eval_step(step, eval_every, jump_period):
            run_eval(step)
        if callbacks.on_progress is not None and step % callbacks.stop_every == 0 and step < steps:
            callbacks.on_progress(step)
        if (
            callbacks.should_stop is not None
            and step % callbacks.stop_every == 0
            and step < steps
            and callbacks.should_stop()
        ):
            result.stopped_early = True
            break
    flush()
    if not result.stopped_early and (not result.evals or result.evals[-1][0] != steps):
        run_eval(result.steps_done)
    model.train()
    result.wall_time_s = time.perf_counter() - started
    return result
