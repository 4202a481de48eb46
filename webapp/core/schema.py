"""The OpenAPI schema (``/api/schema/``): every operation documents the errors it can answer.

``AutoSchema`` (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``) adds, to whatever a view declares,
the error responses that follow from its shape, so no view repeats them:

- every operation: 500 (an unexpected error, JSON from ``OutageMiddleware``) and 503 (the
  broker or the database is unavailable);
- operations that need a signed-in user: 401 (no or a bad token), and for unsafe methods 403
  (a session without its CSRF token);
- operations with a request body: 400 (``ValidationError``), 413 (over ``MAX_UPLOAD_SIZE``)
  and 415 (a content type the API does not parse);
- operations on one object (a path parameter) and paginated lists (a page past the end): 404.

409 is declared where it can happen, with ``conflict(...)`` (whose body may carry
``existing``: where the duplicate you already have lives); other statuses a view answers
(e.g. 400 for a bad query parameter) are declared with ``error(...)``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers outside request validation: one sentence for a person."""

    detail = serializers.CharField(help_text="What went wrong, as a sentence.")

    class Meta:
        ref_name = "Error"


class ConflictSerializer(ErrorSerializer):
    """A 409: the request conflicts with the current state (or with an object you have)."""

    existing = serializers.CharField(
        required=False,
        help_text="For duplicate uploads: the URL of the copy you already have.",
    )
    existing_id = serializers.IntegerField(
        required=False, help_text="For duplicate uploads: the id of the copy you already have."
    )

    class Meta:
        ref_name = "Conflict"


VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The request was refused. Either `detail` (one sentence: a malformed body, a refused "
        "upload) or, for invalid fields, each field's name mapped to its list of messages "
        "(nested for `parameters`); `non_field_errors` holds messages about the whole request."
    ),
    "properties": {
        "detail": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {},
}


def error(description: str) -> OpenApiResponse:
    """An error response with the shared ``{"detail": str}`` body."""
    return OpenApiResponse(ErrorSerializer, description=description)


def conflict(description: str) -> OpenApiResponse:
    """A 409 response (``detail``, and ``existing`` for duplicates)."""
    return OpenApiResponse(ConflictSerializer, description=description)


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's ``AutoSchema`` plus the common error responses (see the module)."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, response in self._common_errors():
            if code in responses:
                continue
            if response is None:
                responses[code] = self._validation_error_response()
            else:
                responses[code] = self._get_response_for_code(response, code, None, direction)
        return dict(sorted(responses.items()))

    def _common_errors(self) -> list[tuple[str, OpenApiResponse | None]]:
        errors: list[tuple[str, OpenApiResponse | None]] = []
        if self._has_request_body():
            errors.append(("400", None))
        if self._needs_authentication():
            errors.append(("401", error("Not signed in: no token, or a token that is not valid.")))
            if self.method in UNSAFE_METHODS:
                errors.append(
                    ("403", error("Refused: signed in by session without the CSRF token."))
                )
        if "{" in self.path:
            errors.append(("404", error("No such object among yours.")))
        elif self._is_list_view() and self._get_paginator() is not None:
            errors.append(("404", error("The page asked for does not exist.")))
        if self._has_request_body():
            errors.append(("413", error("The request body is over the upload size limit.")))
            errors.append(("415", error("The request's content type is not one the API reads.")))
        errors.append(("500", error("The server hit an unexpected error; it has been logged.")))
        errors.append(
            ("503", error("The job queue or the database is unavailable; try again shortly."))
        )
        return errors

    def _has_request_body(self) -> bool:
        return self.method in BODY_METHODS and self.get_request_serializer() is not None

    def _needs_authentication(self) -> bool:
        permissions = self.view.get_permissions()
        return bool(permissions) and not all(isinstance(p, AllowAny) for p in permissions)

    def _validation_error_response(self) -> dict[str, Any]:
        component = ResolvedComponent(
            name="ValidationError",
            type=ResolvedComponent.SCHEMA,
            object="ValidationError",
            schema=VALIDATION_ERROR_SCHEMA,
        )
        self.registry.register_on_missing(component)
        return {
            "content": {"application/json": {"schema": component.ref}},
            "description": "The request was refused: see the fields' messages.",
        }


def job_kind_choices() -> list[tuple[str, str]]:
    """The job kinds, for ``SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]`` (``JobKindEnum``)."""
    from webapp.jobs.kinds import KINDS

    return [(kind.name, kind.label) for kind in KINDS.values()]
