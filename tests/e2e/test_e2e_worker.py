"""End to end: the REST API, the configured broker and database, and a real Celery worker."""

from __future__ import annotations

import time

import pytest

from tests.conftest import export_bytes, upload
from webapp.jobs.models import Job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_for(api, job_id: int, timeout: float = 180) -> tuple[dict, list[str]]:
    """Poll the job like a script would; return its last state and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/jobs/{job_id}/").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in {"succeeded", "failed", "cancelled"}:
            return body, seen
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


def test_a_script_inspects_resnet18_through_the_api(api, worker):
    architecture = api.post(
        "/api/v1/architectures/", {"source": "zoo", "zoo_name": "resnet18"}, format="json"
    ).json()
    created = api.post(
        "/api/v1/jobs/", {"kind": "inspect", "architecture": architecture["id"]}, format="json"
    ).json()
    assert created["status"] == "queued"
    job, seen = wait_for(api, created["id"])
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert seen[0] == "queued" and seen[-1] == "succeeded"
    assert job["result"]["num_params"] == 11_689_512
    assert job["worker"] == worker.hostname
    graph = api.get(f"/api/v1/architectures/{architecture['id']}/graph/").json()
    assert sum(1 for node in graph["nodes"] if node["type"] == "conv") == 21  # + the classifier
    assert len(graph["nodes"]) == 53  # as the published GHN-3 graph of resnet18
    assert (
        api.get(f"/api/v1/architectures/{architecture['id']}/").json()["num_params"] == 11_689_512
    )
    tensors = next(a for a in job["artifacts"] if a["name"] == "tensors.json")
    assert api.get(tensors["download_url"]).status_code == 200


def test_a_script_inspects_an_uploaded_export_archive(api, worker, tmp_path):
    content = export_bytes(tmp_path, "cnn")
    architecture = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("fm16.pt2", content)}
    ).json()
    created = api.post(f"/api/v1/architectures/{architecture['id']}/inspect/").json()
    job, _ = wait_for(api, created["id"])
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["num_params"] == 14_378


def test_a_message_delivered_twice_runs_the_job_once(api, worker, owner):
    from tests.factories import zoo_architecture
    from workers.celery import app

    job = Job.submit(owner=owner, kind="inspect", architecture=zoo_architecture(owner, "mlp"))
    first, _ = wait_for(api, job.pk)
    assert first["status"] == "succeeded"
    app.send_task("weightspace.inspect", args=[job.pk], queue="cpu")  # the duplicate
    deadline = time.monotonic() + 30
    while f"job {job.pk} not claimed" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert f"job {job.pk} not claimed (status succeeded)" in worker.log()
    again = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert again["finished_at"] == first["finished_at"]
    assert [a["id"] for a in again["artifacts"]] == [a["id"] for a in first["artifacts"]]


def test_a_job_that_fails_on_the_worker_shows_why(api, worker, owner):
    from django.core.files.base import ContentFile

    from webapp.architectures.models import Architecture

    broken = Architecture(owner=owner, name="broken", source="export", sha256="f" * 64)
    broken.file.save("broken.pt2", ContentFile(b"PK\x03\x04 not really a zip"), save=True)
    created = api.post(f"/api/v1/architectures/{broken.pk}/inspect/").json()
    job, _ = wait_for(api, created["id"])
    assert job["status"] == "failed" and job["error"]


SLOW_SOURCE = b"""
import time
import torch.nn as nn

INPUT_SHAPE = (4,)


def build_model():
    time.sleep(15)  # long enough to be caught running
    return nn.Linear(4, 2)
"""


def start_slow_python_job(api, owner) -> dict:
    from django.core.files.base import ContentFile

    from webapp.architectures.models import Architecture

    slow = Architecture(owner=owner, name="slow", source="python", sha256="e" * 64)
    slow.file.save("slow.py", ContentFile(SLOW_SOURCE), save=True)
    created = api.post(f"/api/v1/architectures/{slow.pk}/inspect/").json()
    deadline = time.monotonic() + 60
    while api.get(f"/api/v1/jobs/{created['id']}/").json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    return created


def test_cancel_while_running_stops_the_job_on_the_worker(api, worker, owner):
    created = start_slow_python_job(api, owner)
    response = api.post(f"/api/v1/jobs/{created['id']}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    job, _ = wait_for(api, created["id"], timeout=30)
    assert job["status"] == "cancelled", job
    assert not job["artifacts"]


def test_a_worker_process_that_dies_leaves_the_job_failed_with_a_reason(api, worker, owner):
    import os
    import signal

    created = start_slow_python_job(api, owner)
    children = worker.pool_processes()
    assert children, "the worker has no pool process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    job, _ = wait_for(api, created["id"], timeout=60)
    assert job["status"] == "failed"
    assert "died" in job["error"], job["error"]


def test_a_script_trains_with_nino_and_the_plain_optimizer_on_a_real_worker(api, worker):
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "mlp",
         "zoo_args": {"in_features": 40, "hidden": [32], "num_classes": 10}},
        format="json",
    ).json()  # fmt: skip
    parameters = {"dataset": "mnist1d", "steps": 100, "period": 50, "eval_every": 25,
                  "batch_size": 64, "lr": 0.003, "compare": True, "device": "cpu"}  # fmt: skip
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture["id"], "parameters": parameters},
        format="json",
    ).json()
    job, _ = wait_for(api, created["id"], timeout=240)
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["runs"]["nino"]["nowcasts"] == 2
    metrics = api.get(f"/api/v1/jobs/{created['id']}/metrics/").json()["series"]
    assert [step for step, _ in metrics["nino:nowcast"]] == [50, 100]
    assert len(metrics["plain:test_accuracy"]) == 4
    checkpoint = next(a for a in job["artifacts"] if a["name"] == "model.safetensors")
    assert api.get(checkpoint["download_url"]).status_code == 200


def test_a_script_predicts_parameters_with_our_ghn_and_the_checkpoint_gives_the_accuracy(
    api, worker
):
    """The README's script: upload (here: pick) an architecture, ask for a prediction with
    the project's own GHN, download the checkpoint; loading it reproduces the accuracy."""
    from safetensors.torch import load

    from workers.data.datasets import fashion_mnist
    from workers.training.loop import evaluate
    from workers.zoo.build import build_model

    assert api.get("/api/v1/ghns/").json()["ghns"][0]["name"] == "ours"
    architecture = api.post(
        "/api/v1/architectures/", {"source": "zoo", "zoo_name": "cnn"}, format="json"
    ).json()
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "predict", "architecture": architecture["id"],
         "parameters": {"ghn": "ours", "evaluate_on": "fashion_mnist"}},
        format="json",
    ).json()  # fmt: skip
    job, _ = wait_for(api, created["id"], timeout=240)
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    result = job["result"]
    assert result["ghn"] == "ours" and result["predicted_params"] == result["total_params"]
    assert 0 <= result["accuracy_predicted"] <= 1 and 0 <= result["accuracy_random"] <= 1

    checkpoint = next(a for a in job["artifacts"] if a["name"] == "predicted.safetensors")
    model = build_model("cnn")
    model.load_state_dict(load(b"".join(api.get(checkpoint["download_url"]).streaming_content)))
    accuracy = evaluate(model, fashion_mnist())["accuracy"]
    assert round(accuracy, 4) == result["accuracy_predicted"]
