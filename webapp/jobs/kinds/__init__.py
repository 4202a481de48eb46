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
    # ``checks(architecture, parameters, owner) -> webapp.jobs.checks.Verdict``: what the web
    # tier can tell before queueing (shapes, NiNo, GHN domain); its refusals are 400s.
    checks: Callable[[Any, dict[str, Any], Any], Any] | None = None

    @property
    def template(self) -> str:
        """The kind's template: its form section (``part="form"``) and result partial."""
        return f"jobs/kinds/{self.name}.html"

    def clean_parameters(self, raw: Any, owner: Any, architecture: Any = None) -> dict[str, Any]:
        """The validated parameters; ``ValidationError`` (a 400) when they are bad.

        With the ``architecture`` the job is for, the kind's checks run too, and a job that
        would fail on the worker (a data set the model cannot read, NiNo on a model it cannot
        read …) is refused here with the sentence, before it exists.
        """
        if self.parameters is None:
            if raw:
                raise serializers.ValidationError(f"A {self.name} job takes no parameters.")
            return {}
        serializer = self.parameters(data=raw or {}, owner=owner)
        serializer.is_valid(raise_exception=True)
        parameters = dict(serializer.validated_data)
        if architecture is not None:
            refusals = self.verdict(architecture, parameters, owner).refusals
            if refusals:
                raise serializers.ValidationError(refusals)
        return parameters

    def verdict(self, architecture: Any, parameters: dict[str, Any], owner: Any) -> Any:
        """The checks' :class:`~webapp.jobs.checks.Verdict` for validated ``parameters``."""
        from webapp.jobs.checks import Verdict

        if self.checks is None:
            return Verdict()
        return self.checks(architecture, parameters, owner)

    def preview(self, architecture: Any, owner: Any, data: Any = None, like: Any = None) -> Any:
        """The verdict on what the kind's form holds (``data``, else its defaults), for the
        architecture page: refusals, warnings and notes next to the button. ``like`` is a
        form already built for the page, whose choices are reused."""
        from webapp.jobs.checks import Verdict

        form = like or self.form(owner=owner, architecture=architecture)
        values = data if data is not None else {name: form[name].value() for name in form.fields}
        bound = self.form(values, owner=owner, architecture=architecture, like=form)
        if not bound.is_valid():
            return Verdict()  # the form shows its own errors
        try:
            parameters = self.clean_parameters(bound.parameters(), owner)
        except serializers.ValidationError as error:
            return Verdict(refusals=[flatten(error.detail)])
        return self.verdict(architecture, parameters, owner)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (importlib.import_module(f"{__name__}.{module}").KIND for module in _MODULES)
}


def get_kind(name: str) -> JobKind:
    """Return the kind called ``name``; ``KeyError`` when there is none."""
    return KINDS[name]


def clean_parameters(kind: str, raw: Any, owner: Any, architecture: Any = None) -> dict[str, Any]:
    """The validated parameters for a job of ``kind`` (see :meth:`JobKind.clean_parameters`)."""
    return get_kind(kind).clean_parameters(raw, owner, architecture)


def flatten(detail: object) -> str:
    """A DRF error detail (dict, list or string) as one sentence for a page."""
    if isinstance(detail, dict):
        return "; ".join(
            flatten(v) if k in ("non_field_errors", "parameters") else f"{k}: {flatten(v)}"
            for k, v in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(flatten(item) for item in detail)
    return str(detail)
