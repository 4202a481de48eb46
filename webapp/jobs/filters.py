"""The dashboard's filters, search and pages, read from the query string so a view can be shared.

Everything here narrows one queryset; the page still costs one query for its jobs: the total
comes from a window count on the same rows (``COUNT(*) OVER ()``), not from a second query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.db.models import Count, Q, QuerySet, Window

from webapp.core.labels import TAG_PATTERN, tag_query
from webapp.jobs.kinds import KINDS
from webapp.jobs.models import Job

PAGE_SIZE = 25
_JOB_ID = re.compile(r"#?(\d{1,12})")


class DashboardFilters(forms.Form):
    """Status, kind, model and tag filters, a search text and the page number (all optional);
    a value that does not parse is dropped rather than answered with an error page."""

    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Name, model, notes, message or #id"}
        ),
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Job.Status.choices])
    kind = forms.ChoiceField(
        required=False, choices=[("", "Any kind")] + [(k.name, k.label) for k in KINDS.values()]
    )
    model = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Model")
    tag = forms.CharField(
        required=False, max_length=40, widget=forms.TextInput(attrs={"placeholder": "any tag"})
    )
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args: Any, models: list[tuple[int, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "Any model"), *models]

    def clean_tag(self) -> str:
        tag = self.cleaned_data.get("tag", "").strip().lower()
        if tag and not TAG_PATTERN.fullmatch(tag):
            raise forms.ValidationError("A tag is 1–40 of a-z, 0-9, '.', '_' and '-'.")
        return tag

    def values(self) -> dict[str, Any]:
        """The valid filters (empty ones left out); an invalid one counts as not given."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            name: data[name]
            for name in ("q", "status", "kind", "model", "tag")
            if name not in self.errors and data.get(name) not in (None, "")
        }

    @property
    def page_number(self) -> int:
        self.is_valid()
        return (getattr(self, "cleaned_data", {}).get("page") if "page" not in self.errors
                else None) or 1  # fmt: skip


def search(queryset: QuerySet, text: str) -> QuerySet:
    """Jobs whose name, model name, notes, message or tags contain ``text``; ``12`` or ``#12``
    also finds job 12."""
    text = text.strip()
    matches = (
        Q(name__icontains=text)
        | Q(architecture__name__icontains=text)
        | Q(notes__icontains=text)
        | Q(message__icontains=text)
        | Q(tags__icontains=text)
    )
    number = _JOB_ID.fullmatch(text)
    if number:
        matches |= Q(pk=int(number.group(1)))
    return queryset.filter(matches)


def filter_jobs(queryset: QuerySet, values: dict[str, Any]) -> QuerySet:
    """``queryset`` narrowed by the filters of :meth:`DashboardFilters.values`."""
    if "status" in values:
        queryset = queryset.filter(status=values["status"])
    if "kind" in values:
        queryset = queryset.filter(kind=values["kind"])
    if "model" in values:
        queryset = queryset.filter(architecture_id=values["model"])
    if "tag" in values:
        # A tag finds the jobs carrying it and the jobs on a model carrying it.
        queryset = queryset.filter(
            tag_query(values["tag"]) | tag_query(values["tag"], "architecture__")
        )
    if "q" in values:
        queryset = search(queryset, values["q"])
    return queryset


@dataclass
class JobPage:
    """One page of filtered jobs and what its links need."""

    jobs: list[Job]
    number: int
    total: int
    size: int
    filters: dict[str, Any]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.jobs else 0

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.jobs) - 1 if self.jobs else 0

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    def query(self, **changes: Any) -> str:
        """The query string of this view with ``changes`` (``page=2``), empty values dropped."""
        values = {**self.filters, "page": self.number, **changes}
        if values.get("page") == 1:
            del values["page"]
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})

    @property
    def previous_query(self) -> str:
        return self.query(page=self.number - 1)

    @property
    def next_query(self) -> str:
        return self.query(page=self.number + 1)

    @property
    def first_query(self) -> str:
        return self.query(page=1)


def job_page(queryset: QuerySet, values: dict[str, Any], number: int,
             size: int = PAGE_SIZE) -> JobPage:  # fmt: skip
    """Page ``number`` of the filtered jobs, with the total counted in the same query."""
    rows = list(
        filter_jobs(queryset, values).annotate(total_matching=Window(Count("id")))[
            (number - 1) * size : number * size
        ]
    )
    if rows:
        total = rows[0].total_matching
    elif number > 1:
        # Past the end (an old link): say how many there are, at the price of a count.
        total = filter_jobs(queryset, values).count()
    else:
        total = 0
    return JobPage(jobs=rows, number=number, total=total, size=size, filters=values)
