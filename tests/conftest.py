"""Personas and small builders shared by the tests.

Personas: ``owner`` (the person whose objects these are) and ``outsider`` (another signed-in
user, who must never see them).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.worker_process import WorkerProcess


@pytest.fixture(autouse=True)
def _isolated_media(request: pytest.FixtureRequest, settings, tmp_path: Path) -> None:
    """Each test gets its own storage folder, so 'nothing was stored' can be checked.

    End-to-end tests keep the configured folder: the worker process must see the same files.
    """
    if "e2e" not in request.keywords:
        settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("olivia", password="owner-pass-123")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("oscar", password="outsider-pass-123")


def _token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(owner) -> APIClient:
    """The owner, calling the API with a token as a script would."""
    return _token_client(owner)


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    return _token_client(outsider)


@pytest.fixture
def browser(client, owner):
    """The owner in a signed-in browser session."""
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_browser(client, outsider):
    client.force_login(outsider)
    return client


@pytest.fixture(scope="session")
def worker(django_db_setup, tmp_path_factory):
    """A real Celery worker process on the test database and the configured broker."""
    from django.db import connection

    from workers.celery import app, ensure_broker_folders

    ensure_broker_folders()
    with app.connection_for_write() as conn:  # drop messages left by an earlier run
        for queue in ("cpu", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue that does not exist yet is empty
                pass
    process = WorkerProcess(connection.settings_dict, tmp_path_factory.mktemp("worker") / "log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def cancel_at_progress_report(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the person press Cancel (through the model, as the page does) just before the
    worker's ``n``-th progress report of the next job, so the job sees it mid-run."""
    import workers.tasks.policy
    from webapp.jobs.models import Job

    real_reporter = workers.tasks.policy._progress_reporter

    def reporter(running_job):
        report = real_reporter(running_job)
        calls = {"n": 0}

        def progress(fraction, message=""):
            calls["n"] += 1
            if calls["n"] == n:
                Job.objects.get(pk=running_job.pk).request_cancel()
            report(fraction, message)

        return progress

    monkeypatch.setattr(workers.tasks.policy, "_progress_reporter", reporter)


def stored_files(root: str | Path) -> list[Path]:
    """Every file under a storage root (empty when nothing was stored)."""
    path = Path(root)
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def torch_bytes(obj, **kwargs) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def safetensors_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def export_bytes(tmp_path: Path, name: str = "cnn", args: dict | None = None) -> bytes:
    """A .pt2 archive of a zoo model exported with a dynamic batch dimension."""
    import torch

    from workers.zoo.build import build_model, example_input

    model = build_model(name, args or {})
    example = example_input(name, args or {})
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    path = tmp_path / f"{name}.pt2"
    torch.export.save(program, path)
    return path.read_bytes()
