"""The OpenAPI schema agrees with the API: a bounded schemathesis run against the app in-process.

Every operation of ``/api/schema/`` gets a few generated requests, made as the owner with a
token; each answer must be no server error, have a documented status and content type, and
match its documented body. Half of the generated ids are replaced by the owner's real objects,
so the success bodies are checked too, not only the 404s. Nothing runs a job: the test's
transaction never commits, so ``Job.submit`` never reaches the broker.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import queued_job, zoo_architecture  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation; raise it for a deeper run (WEIGHTSPACE_SCHEMA_EXAMPLES=200 pytest ...).
MAX_EXAMPLES = int(os.environ.get("WEIGHTSPACE_SCHEMA_EXAMPLES", "10"))

_loaded: dict[str, Any] = {}


@pytest.fixture
def _kept_connection(db):  # type: ignore[no-untyped-def]
    """Keep the test's database connection (and its transaction) across in-process requests:
    Django closes "old" connections when a request finishes, as Django's test client avoids."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(_kept_connection):  # type: ignore[no-untyped-def]
    if "schema" not in _loaded:
        from webapp.wsgi import application

        _loaded["schema"] = schemathesis.openapi.from_wsgi("/api/schema/", application)
    return _loaded["schema"]


@pytest.fixture
def seeded(owner) -> dict[str, Any]:
    """The owner's token, an inspected architecture with its documents, and two jobs."""
    from django.utils import timezone

    architecture = zoo_architecture(owner)
    inspection = queued_job(owner, architecture)
    inspection.status = "succeeded"
    inspection.finished_at = timezone.now()
    inspection.save()
    tensors = [{"name": "0.weight", "shape": [4, 2], "dtype": "float32", "numel": 8}]
    inspection.save_artifact(
        "tensors", "tensors.json", json.dumps(tensors).encode(), "application/json"
    )
    inspection.save_artifact(
        "graph", "arch_graph.json", b'{"nodes": [], "edges": []}', "application/json"
    )
    inspection.save_artifact("graph", "param_graph.json", b'{"num_nodes": 0}', "application/json")
    inspection.metrics.create(series="loss", step=1, value=0.5)
    failed = queued_job(owner, architecture)
    failed.status = "failed"
    failed.finished_at = timezone.now()
    failed.save()
    return {
        "token": Token.objects.get_or_create(user=owner)[0].key,
        "ids": {
            "/api/v1/architectures/": architecture.pk,
            "/api/v1/jobs/": inspection.pk,
        },
        "failed_job": failed.pk,
        "artifact": inspection.artifacts.get(name="tensors.json").pk,
    }


def _use_seeded_ids(case: Any, seeded: dict[str, Any]) -> None:
    """Point about half of the generated ids at the owner's real objects."""
    path_parameters = case.path_parameters or {}
    generated = path_parameters.get("id")
    if not (isinstance(generated, int) and generated % 2 == 0):
        return
    for prefix, pk in seeded["ids"].items():
        if case.path.startswith(prefix):
            path_parameters["id"] = pk
    if case.path.endswith("/retry/"):
        path_parameters["id"] = seeded["failed_job"]
    if "artifact_id" in path_parameters:
        path_parameters["artifact_id"] = str(seeded["artifact"])


def _run(operation: Any, seeded: dict[str, Any], statuses: Counter[str]) -> None:
    """Up to ``MAX_EXAMPLES`` generated requests to ``operation``; raises on the first failure."""
    headers = {"Authorization": f"Token {seeded['token']}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        _use_seeded_ids(case, seeded)
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[f"{operation.label} {response.status_code}"] += 1

    run()


def test_api_matches_its_schema(api_schema, seeded) -> None:  # type: ignore[no-untyped-def]
    # Deletions last, so the other operations still find the seeded objects.
    operations = sorted(
        (result.ok() for result in api_schema.get_all_operations()),
        key=lambda operation: (operation.method.upper() == "DELETE", operation.label),
    )
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    for operation in operations:
        try:
            _run(operation, seeded, statuses)
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - report them all
            failures.append(f"{operation.label}: {error}")

    print(f"schemathesis: {len(operations)} operations, {sum(statuses.values())} answers checked")
    print("\n".join(f"  {answer}: {count}" for answer, count in sorted(statuses.items())))
    assert len(operations) >= 25
    assert not failures, "\n\n".join(failures)


def _openapi(api) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_every_operation_documents_its_errors(api):
    schema = _openapi(api)
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            for code in ("500", "503"):
                assert responses[code]["content"]["application/json"]["schema"] == error, where
            if "{" in path:
                assert "404" in responses, where
            if method in ("post", "put", "patch") and "requestBody" in operation:
                assert {"400", "413"} <= set(responses), where
            if path != "/api/v1/auth/token/":
                assert "401" in responses, where
    conflict = schema["components"]["schemas"]["Conflict"]
    assert set(conflict["properties"]) == {"detail", "existing", "existing_id"}
    assert conflict["required"] == ["detail"]
    for path in ("/api/v1/architectures/", "/api/v1/checkpoints/", "/api/v1/datasets/"):
        assert "409" in schema["paths"][path]["post"]["responses"], path


def test_list_shaped_answers_are_declared_arrays(api):
    paths = _openapi(api)["paths"]
    for path in ("/api/v1/architectures/{id}/tensors/", "/api/v1/jobs/{id}/artifacts/"):
        body = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert body["type"] == "array", path


def test_null_parameters_and_zoo_args_mean_defaults_as_declared(api, owner):
    schema = _openapi(api)["components"]["schemas"]
    assert schema["JobCreateRequest"]["properties"]["parameters"]["nullable"] is True
    assert schema["ArchitectureCreateRequest"]["properties"]["zoo_args"]["nullable"] is True

    created = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "mlp", "zoo_args": None},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["zoo_args"] == zoo_architecture(owner).zoo_args
    job = api.post(
        "/api/v1/jobs/",
        {"kind": "inspect", "architecture": created.json()["id"], "parameters": None},
        format="json",
    )
    assert job.status_code == 201, job.content
    assert job.json()["parameters"] == {}
    refused = api.post(
        "/api/v1/jobs/",
        {"kind": "inspect", "architecture": created.json()["id"], "parameters": [1]},
        format="json",
    )
    assert refused.status_code == 400 and "parameters" in refused.json()
