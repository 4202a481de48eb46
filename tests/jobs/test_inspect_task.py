"""The inspect task adapter, run in-process: claims, results, failures, cancels, re-delivery."""

from __future__ import annotations

import pytest

from tests.conftest import cancel_at_progress_report
from tests.factories import zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def run_inspect(job: Job) -> Job:
    from workers.tasks import inspect

    inspect.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def test_inspecting_the_fm16_cnn_records_its_parameters_graph_and_tensors(owner):
    architecture = zoo_architecture(owner, "cnn")
    job = run_inspect(Job.objects.create(owner=owner, kind="inspect", architecture=architecture))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["num_params"] == 14_378
    assert job.progress == 1.0
    assert {a.name for a in job.artifacts.all()} == {
        "graph.json",
        "arch_graph.json",
        "param_graph.json",
        "tensors.json",
    }
    neural = job.artifacts.get(name="param_graph.json").read_json()
    assert (neural["nodes"], neural["edges"]) == (95, 2057)  # the published FM/16 graph
    assert all(value is not None for *_, value in neural["edge_list"])  # with the weights
    ghn = job.artifacts.get(name="arch_graph.json").read_json()
    assert [n["type"] for n in ghn["nodes"]].count("conv") == 4  # three convs and the classifier
    tensors = job.artifacts.get(name="tensors.json").read_json()
    assert sum(t["numel"] for t in tensors) == 14_378
    graph = job.artifacts.get(name="graph.json").read_json()
    assert graph["nodes"] and graph["edges"]
    architecture.refresh_from_db()
    assert architecture.num_params == 14_378 and architecture.inspected_at is not None


def test_a_redelivered_message_does_not_run_the_job_twice(owner):
    job = Job.objects.create(owner=owner, kind="inspect", architecture=zoo_architecture(owner))
    job = run_inspect(job)
    finished_at = job.finished_at
    artifact_ids = sorted(job.artifacts.values_list("id", flat=True))
    again = run_inspect(job)
    assert again.status == Job.Status.SUCCEEDED
    assert again.finished_at == finished_at
    assert sorted(again.artifacts.values_list("id", flat=True)) == artifact_ids


def test_a_task_that_raises_leaves_the_job_failed_with_the_error(owner, settings, tmp_path):
    from django.core.files.base import ContentFile

    broken = Architecture(owner=owner, name="broken", source="export", sha256="0" * 64)
    broken.file.save("broken.pt2", ContentFile(b"this is not a zip archive"), save=True)
    job = run_inspect(Job.objects.create(owner=owner, kind="inspect", architecture=broken))
    assert job.status == Job.Status.FAILED
    assert job.error  # a sentence for the page, not an empty string
    assert job.finished_at is not None and not job.artifacts.exists()


def test_cancel_while_running_ends_the_job_cancelled(owner, monkeypatch):
    """The user presses cancel after the worker started; the next progress report stops it."""
    job = Job.objects.create(owner=owner, kind="inspect", architecture=zoo_architecture(owner))
    cancel_at_progress_report(monkeypatch, 2)
    job = run_inspect(job)
    assert job.status == Job.Status.CANCELLED
    assert job.cancel_requested and job.finished_at is not None
