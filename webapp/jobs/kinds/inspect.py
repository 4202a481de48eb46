"""The ``inspect`` job: build the network, count its parameters, trace its graphs."""

from __future__ import annotations

from webapp.jobs.kinds import JobKind

KIND = JobKind(
    name="inspect",
    label="Inspect",
    task="weightspace.inspect",
    queue="cpu",
    needs_architecture=True,
    description="Build the network, count its parameters and trace its graph.",
)
