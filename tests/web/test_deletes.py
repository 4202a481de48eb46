"""Deleting a row deletes its files — uploads and, through the cascade, its jobs' artifacts —
once the delete has committed; ``orphaned_files`` finds what an older version left behind."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from tests.conftest import export_bytes, safetensors_bytes, stored_files, upload
from webapp.jobs.models import Job


@pytest.fixture
def uploaded_model(api, tmp_path) -> dict:
    response = api.post(
        "/api/v1/architectures/",
        {"source": "export", "file": upload("cnn.pt2", export_bytes(tmp_path))},
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_deleting_an_architecture_removes_its_file_and_its_jobs_artifacts(
    api, owner, settings, uploaded_model, django_capture_on_commit_callbacks
):
    job = Job.objects.create(owner=owner, kind="inspect", architecture_id=uploaded_model["id"])
    job.claim("w")
    job.save_artifact("graph", "graph.json", b"{}", "application/json")
    job.succeed()
    assert len(stored_files(settings.MEDIA_ROOT)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/architectures/{uploaded_model['id']}/")
    assert response.status_code == 204
    assert stored_files(settings.MEDIA_ROOT) == []


def test_deleting_a_checkpoint_removes_its_file(api, settings, django_capture_on_commit_callbacks):
    import torch

    content = safetensors_bytes({"w": torch.zeros(3)})
    created = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)}).json()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/checkpoints/{created['id']}/").status_code == 204
    assert stored_files(settings.MEDIA_ROOT) == []


def test_a_delete_that_is_rolled_back_keeps_the_files(owner, settings, uploaded_model):
    from django.db import transaction

    from webapp.architectures.models import Architecture

    with pytest.raises(RuntimeError), transaction.atomic():
        Architecture.objects.get(pk=uploaded_model["id"]).delete()
        raise RuntimeError("rolled back")
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_orphaned_files_lists_and_removes_only_files_no_row_names(settings, uploaded_model):
    stray = default_storage.save("artifacts/999/left-behind.json", io.BytesIO(b"{}"))
    out, err = io.StringIO(), io.StringIO()
    call_command("orphaned_files", stdout=out, stderr=err)
    assert out.getvalue().split() == [stray] and "1 orphaned" in err.getvalue()
    call_command("orphaned_files", "--delete", stdout=io.StringIO(), stderr=io.StringIO())
    assert not default_storage.exists(stray)
    assert len(stored_files(settings.MEDIA_ROOT)) == 1  # the architecture's own file stays
