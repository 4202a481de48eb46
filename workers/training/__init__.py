"""Training loops for the ``train`` job: pure torch, no Django.

``train`` runs plain optimizer steps; an optimizer wrapper (NiNo, for one) can replace some.
"""

from workers.training.loop import (
    OPTIMIZERS,
    Callbacks,
    SteppingOptimizer,
    TrainResult,
    evaluate,
    make_optimizer,
    resolve_device,
    task_loss,
    train,
)

__all__ = [
    "OPTIMIZERS",
    "Callbacks",
    "SteppingOptimizer",
    "TrainResult",
    "evaluate",
    "make_optimizer",
    "resolve_device",
    "task_loss",
    "train",
]
