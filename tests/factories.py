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
