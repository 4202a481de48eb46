"""The htmx pages: they render for the owner, answer 404 to others, and poll only while active."""

from __future__ import annotations

import json

import pytest

from tests.conftest import safetensors_bytes, upload
from tests.factories import queued_job, zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert b"Log in" in client.get("/login/").content


def test_a_person_can_log_in_and_out(client, owner):
    response = client.post("/login/", {"username": "olivia", "password": "owner-pass-123"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_the_dashboard_shows_my_jobs_and_models_only(browser, owner, outsider):
    mine = queued_job(owner)
    theirs = queued_job(outsider, zoo_architecture(outsider, "cnn"))
    page = browser.get("/").content.decode()
    assert f"#{mine.pk}" in page and f'id="job-row-{theirs.pk}"' not in page
    assert mine.architecture.name in page


def test_dashboard_rows_poll_only_while_the_job_is_active(browser, owner):
    job = queued_job(owner)
    row = browser.get(f"/jobs/{job.pk}/row/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in row
    job.claim("w")
    job.succeed("done")
    row = browser.get(f"/jobs/{job.pk}/row/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in row and "Succeeded" in row


def test_the_job_page_renders_live_parts_and_stops_polling_when_done(browser, owner):
    job = queued_job(owner)
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "<html" in page and 'hx-trigger="every 1s"' in page and "Cancel job" in page
    partial = browser.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and 'id="job-live"' in partial
    job.claim("w")
    job.record_metrics("train_loss", [(0, 2.0), (10, 1.0)])
    job.fail("Something broke")
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "hx-trigger" not in page and "Something broke" in page and "Retry" in page
    assert f"/jobs/{job.pk}/charts.json" in page  # the charts load their points


def test_the_cancel_button_cancels_and_retry_makes_a_new_job(browser, owner):
    job = queued_job(owner)
    response = browser.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    response = browser.post(f"/jobs/{job.pk}/retry/")
    assert Job.objects.filter(retry_of=job).exists()


def test_the_upload_page_adds_a_zoo_model_and_starts_an_inspection(browser):
    assert b"resnet18" in browser.get("/architectures/new/").content
    response = browser.post(
        "/architectures/new/",
        {
            "source": "zoo",
            "zoo_name": "resnet18",
            "zoo_args": '{"num_classes": 10}',
            "inspect": "1",
        },
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
    assert job.architecture.zoo_args == {"num_classes": 10}


def test_the_upload_page_explains_what_is_wrong(browser, settings):
    response = browser.post("/architectures/new/", {"source": "zoo", "zoo_args": "{oops"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Choose a zoo model." in page and "Not valid JSON" in page
    response = browser.post("/architectures/new/", {"source": "export"})
    assert response.status_code == 400 and "Attach the model file." in response.content.decode()
    assert not Architecture.objects.exists()


def test_the_checkpoint_upload_page_refuses_a_pickle_with_a_message(browser, settings, tmp_path):
    import pickle

    response = browser.post("/checkpoints/new/", {"file": upload("x.pt", pickle.dumps({"a": 1}))})
    assert response.status_code == 400
    assert "not a torch zip archive" in response.content.decode()


def test_the_checkpoint_pages_render_for_the_owner_only(browser, client, owner, outsider):
    import torch

    response = browser.post(
        "/checkpoints/new/",
        {"file": upload("w.safetensors", safetensors_bytes({"layer.w": torch.ones(2, 2)}))},
    )
    assert response.status_code == 302
    page = browser.get(response.url).content.decode()
    assert "layer.w" in page
    client.force_login(outsider)
    assert client.get(response.url).status_code == 404


def test_the_architecture_page_shows_how_to_inspect_before_any_job(browser, owner):
    architecture = zoo_architecture(owner)
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert "not inspected yet" in page and "Inspect" in page
    response = browser.post(f"/architectures/{architecture.pk}/inspect/")
    assert response.status_code == 302 and Job.objects.filter(architecture=architecture).exists()


def test_the_architecture_page_shows_both_graphs_of_an_inspected_model(browser, owner):
    from workers.pipelines.inspect import ModelSpec, inspect_model

    architecture = zoo_architecture(owner, "cnn")
    result = inspect_model(ModelSpec(source="zoo", name="cnn"))
    job = queued_job(owner, architecture)
    job.claim("w")
    for name in ("arch_graph", "param_graph"):
        document = json.dumps(getattr(result, name)).encode()
        job.save_artifact("graph", f"{name}.json", document, "x/json")
    job.save_artifact("tensors", "tensors.json", json.dumps(result.tensors).encode(), "x/json")
    job.succeed("ok")
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    viewer_url = f"/architectures/{architecture.pk}/viewer.json"
    assert f'data-url="{viewer_url}"' in page  # the graph viewer loads its document there
    assert "16</strong> neurons" in page  # the parameter graph's per-layer blocks
    ghn = browser.get(viewer_url).json()["views"]["ghn"]  # no graph.json stored: GHN only
    assert ghn["nodes"][1]["label"] == "conv 16×1×3×3"
    assert ghn["nodes"][1]["params"][0]["nino"] is True  # NiNo's graph holds the tensor
    assert "95 neurons, 2,057 edges" in page  # NiNo's FM/16 parameter graph
    assert (
        browser.get(f"/api/v1/architectures/{architecture.pk}/param-graph/").json()["nodes"] == 95
    )


def test_the_architecture_page_says_why_nino_cannot_read_a_model(browser, owner):
    architecture = zoo_architecture(owner, "resnet18")
    job = queued_job(owner, architecture)
    job.claim("w")
    refused = {"supported": False, "reason": "Layer conv1 has a 7x7 kernel (49 positions)"}
    job.save_artifact("graph", "param_graph.json", json.dumps(refused).encode(), "x/json")
    job.succeed("ok")
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert "NiNo cannot read this model: Layer conv1 has a 7x7 kernel" in page


@pytest.mark.parametrize("url", ["/jobs/{job}/", "/jobs/{job}/row/", "/architectures/{arch}/"])
def test_other_peoples_pages_are_not_found(outsider_browser, owner, url):
    job = queued_job(owner)
    target = url.format(job=job.pk, arch=job.architecture_id)
    assert outsider_browser.get(target).status_code == 404


def test_other_people_cannot_cancel_my_job(outsider_browser, owner):
    job = queued_job(owner)
    assert outsider_browser.post(f"/jobs/{job.pk}/cancel/").status_code == 404
    assert (
        outsider_browser.post(f"/architectures/{job.architecture_id}/inspect/").status_code == 404
    )
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
