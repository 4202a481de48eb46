"""The registry of job kinds: which Celery task runs each, on which queue, and what it needs.

Later capabilities (predict, train) add an entry here and a task in ``workers.tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is run."""

    name: str
    label: str
    task: str  # Celery task name, sent by name so the web tier never imports the engine
    queue: str  # "cpu" or "gpu"
    needs_architecture: bool = False
    needs_checkpoint: bool = False
    description: str = ""


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in [
        JobKind(
            name="inspect",
            label="Inspect",
            task="weightspace.inspect",
            queue="cpu",
            needs_architecture=True,
            description="Build the network, count its parameters and trace its graph.",
        ),
        JobKind(
            name="train",
            label="Train",
            task="weightspace.train",
            queue="gpu",
            needs_architecture=True,
            description="Train on a data set, optionally accelerated by NiNo nowcasting.",
        ),
        JobKind(
            name="predict",
            label="Predict",
            task="weightspace.predict",
            queue="gpu",
            needs_architecture=True,
            description="Predict all parameters with a Graph HyperNetwork, in one pass.",
        ),
    ]
}


def get_kind(name: str) -> JobKind:
    """Return the kind called ``name``; ``KeyError`` when there is none."""
    return KINDS[name]
