"""Names, tags and notes: what a person calls a job or a model, and how they find it again.

Tags are stored in one text column as ``",a,b,"`` — lower-cased, trimmed, de-duplicated and
sorted — so that ``tags__icontains=",tag,"`` finds one tag exactly, the same way on SQLite
and PostgreSQL, without a join table. A tag is 1 to 40 of ``a-z 0-9 . _ -``.

The same three pieces serve every tier: :func:`normalise_tags` (models, forms, serializers),
:class:`Labelled` (the models' reading side and their one writer), :class:`LabelsForm` (the
pages' inline form) and :class:`TagsField` (the API's JSON list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

TAG_PATTERN = re.compile(r"[a-z0-9._-]{1,40}")
MAX_TAGS = 20
# The tags column holds 500 characters; 20 tags of 40 characters and their commas fit.
TAGS_COLUMN = 500
NAME_LENGTH = 200
NOTES_LENGTH = 10_000


class TagError(ValueError):
    """A tag list that cannot be stored; the message says which tag and why."""


def _pieces(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # People write "a, b c" or paste ",a,b," back: commas and spaces both separate.
        return re.split(r"[,\s]+", value)
    # A list holds one tag per item: "not ok" there is a mistake to report, not two tags.
    pieces: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise TagError(f"Tags are words, not {type(item).__name__} values ({item!r}).")
        pieces.append(item)
    return pieces


def normalise_tags(value: str | Iterable[str] | None) -> str:
    """The stored form of ``value`` (a text such as ``"Baseline, lr-sweep"`` or a list):
    ``",baseline,lr-sweep,"``, or ``""`` for no tags. Raises :class:`TagError`."""
    tags = sorted({piece.strip().lower() for piece in _pieces(value) if piece.strip()})
    for tag in tags:
        if len(tag) > 40:
            raise TagError(f"The tag {tag[:40]!r}… is longer than 40 characters.")
        if not TAG_PATTERN.fullmatch(tag):
            raise TagError(
                f"The tag {tag!r} has characters a tag cannot hold; use letters, digits, "
                "'.', '_' and '-' (e.g. lr-sweep, v1.2)."
            )
    if len(tags) > MAX_TAGS:
        raise TagError(f"At most {MAX_TAGS} tags; this list has {len(tags)}.")
    return f",{','.join(tags)}," if tags else ""


def tag_list(stored: str) -> list[str]:
    """The tags of a stored ``",a,b,"`` value, as a list (``[]`` for none)."""
    return [tag for tag in stored.split(",") if tag]


def with_tag(queryset: QuerySet, tag: str) -> QuerySet:
    """Rows of ``queryset`` carrying ``tag`` (written any case); none for a malformed tag."""
    tag = tag.strip().lower()
    if not TAG_PATTERN.fullmatch(tag):
        return queryset.none()
    return queryset.filter(tags__icontains=f",{tag},")


def tag_query(tag: str, prefix: str = "") -> Q:
    """The ``Q`` of :func:`with_tag`, for combining (``prefix`` such as ``"architecture__"``)."""
    return Q(**{f"{prefix}tags__icontains": f",{tag.strip().lower()},"})


class Labelled:
    """Reading and writing a model's ``name``, ``tags`` and ``notes`` (mixed into ``Job`` and
    ``Architecture``, which hold the three columns)."""

    name: str
    tags: str
    notes: str
    pk: Any
    # The routes of the shared partial (templates/partials/labels.html): its inline form and
    # the delete confirmation; whether it shows the name (a model's page has it as heading).
    labels_route = ""
    delete_route = ""
    labels_show_name = True

    @property
    def labels_url(self) -> str:
        from django.urls import reverse

        return reverse(self.labels_route, args=[self.pk])

    @property
    def delete_url(self) -> str:
        from django.urls import reverse

        return reverse(self.delete_route, args=[self.pk])

    @property
    def tag_list(self) -> list[str]:
        return tag_list(self.tags)

    @property
    def tags_text(self) -> str:
        """The tags as a person types them: ``"baseline, lr-sweep"``."""
        return ", ".join(self.tag_list)

    def set_labels(
        self,
        *,
        name: str | None = None,
        tags: str | Iterable[str] | None = None,
        notes: str | None = None,
    ) -> list[str]:
        """Change the labels given (``None`` leaves one as it is) and save only those;
        return the changed field names. Raises :class:`TagError` for bad tags."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name.strip()[:NAME_LENGTH]
        if tags is not None:
            values["tags"] = normalise_tags(tags)
        if notes is not None:
            values["notes"] = notes.strip()[:NOTES_LENGTH]
        changed = [field for field, value in values.items() if getattr(self, field) != value]
        for field in changed:
            setattr(self, field, values[field])
        if changed:
            self.save(update_fields=changed)  # type: ignore[attr-defined]
        return changed


class LabelsForm(forms.Form):
    """The inline form on the job and architecture pages."""

    name = forms.CharField(max_length=NAME_LENGTH, required=False)
    tags = forms.CharField(
        max_length=TAGS_COLUMN,
        required=False,
        help_text="Separated by commas or spaces: letters, digits, '.', '_' and '-'.",
        widget=forms.TextInput(attrs={"placeholder": "baseline, lr-sweep"}),
    )
    notes = forms.CharField(
        max_length=NOTES_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, name_required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = name_required

    @classmethod
    def for_object(cls, obj: Labelled, data: Any = None, **kwargs: Any) -> LabelsForm:
        initial = {"name": obj.name, "tags": obj.tags_text, "notes": obj.notes}
        return cls(data, initial=initial, **kwargs)

    def clean_tags(self) -> str:
        try:
            return normalise_tags(self.cleaned_data.get("tags", ""))
        except TagError as error:
            raise forms.ValidationError(str(error)) from None


@extend_schema_field(
    {
        "type": "array",
        "maxItems": MAX_TAGS,
        # Any case is accepted and stored lower-cased.
        "items": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,40}$"},
    }
)
class TagsField(serializers.Field):
    """Tags in the API: a JSON list of strings (a comma-separated string is accepted too);
    stored as ``",a,b,"``."""

    default_error_messages = {"invalid": "Tags are a list of strings, e.g. [\"baseline\"]."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "A list of tags: 1–40 of a-z, 0-9, '.', '_', '-'; lower-cased and de-duplicated.",
        )
        super().__init__(**kwargs)

    def to_representation(self, value: str) -> list[str]:
        return tag_list(value or "")

    def to_internal_value(self, data: Any) -> str:
        if data is None:
            return ""
        if not isinstance(data, (str, list)):
            self.fail("invalid")
        try:
            return normalise_tags(data)
        except TagError as error:
            raise serializers.ValidationError(str(error)) from None


def labels_response(
    request: HttpRequest,
    obj: Any,
    template: str,
    *,
    name_required: bool,
    refresh_on_name: bool = False,
) -> HttpResponse:
    """Show, edit (``?edit=1``) or save (POST) ``obj``'s labels as the partial ``template``;
    the job and architecture pages share it. htmx swaps the partial in place; a request
    without htmx goes back to the object's page (with the reason, when refused)."""
    htmx = bool(getattr(request, "htmx", None))
    context: dict[str, Any] = {"object": obj, "editing": False}
    if request.method == "POST":
        form = LabelsForm.for_object(obj, request.POST, name_required=name_required)
        if form.is_valid():
            data = form.cleaned_data
            changed = obj.set_labels(name=data["name"], tags=data["tags"], notes=data["notes"])
            if not htmx:
                return redirect(obj)
            response = render(request, template, context)
            if refresh_on_name and "name" in changed:
                response.headers["HX-Refresh"] = "true"
            return response
        if not htmx:
            messages.error(request, " ".join(" ".join(e) for e in form.errors.values()))
            return redirect(obj)
        # htmx swaps only 2xx answers: the form comes back with its errors as a 200.
        context.update(form=form, editing=True)
    elif request.GET.get("edit"):
        context.update(form=LabelsForm.for_object(obj, name_required=name_required), editing=True)
    elif not htmx:
        return redirect(obj)
    return render(request, template, context)
