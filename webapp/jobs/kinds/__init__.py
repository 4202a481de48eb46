"""The registry of job kinds. Each kind is one module here, holding everything the web tier
knows about it: its Celery task (sent by name, so the web tier never imports the engine), its
queue, the validation of its ``parameters``, its form on the architecture page, its template
(``templates/jobs/kinds/<kind>.html``: the form section and the result partial) and what
happens when a job of it succeeds.

A new kind is a module here with a ``KIND = JobKind(...)``, listed in ``_MODULES``, plus the
worker adapter ``workers/tasks/<kind>.py`` and the template; ``docs/ARCHITECTURE.md`` walks
through an example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

_MODULES = ("inspect", "train", "predict")


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is validated, shown and run."""

    name: str
    label: str
    task: str  # Celery task name, e.g. "weightspace.train"
    queue: str  # "cpu" or "gpu"
    description: str = ""
    needs_architecture: bool = False
    needs_checkpoint: bool = False
    # A DRF serializer class taking ``data=`` and ``owner=``; None: the kind takes no parameters.
    parameters: type[serializers.Serializer] | None = None
    # A Django form class taking ``owner=`` with a ``parameters()`` method; None: no form, the
    # architecture page shows only a button (inspect).
    form: type | None = None
    # Called once, in the web tier's terms, after a job of this kind has succeeded.
    on_succeeded: Callable[[Any], None] | None = None

    @property
    def template(self) -> str:
        """The kind's template: its form section (``part="form"``) and result partial."""
        return f"jobs/kinds/{self.name}.html"

    def clean_parameters(self, raw: Any, owner: Any) -> dict[str, Any]:
        """The validated parameters; ``ValidationError`` (a 400) when they are bad."""
        if self.parameters is None:
            if raw:
                raise serializers.ValidationError(f"A {self.name} job takes no parameters.")
            return {}
        serializer = self.parameters(data=raw or {}, owner=owner)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (importlib.import_module(f"{__name__}.{module}").KIND for module in _MODULES)
}


def get_kind(name: str) -> JobKind:
    """Return the kind called ``name``; ``KeyError`` when there is none."""
    return KINDS[name]


def clean_parameters(kind: str, raw: Any, owner: Any) -> dict[str, Any]:
    """The validated parameters for a job of ``kind`` (see :meth:`JobKind.clean_parameters`)."""
    return get_kind(kind).clean_parameters(raw, owner)
