"""Every REST endpoint, for the owner and for an outsider (who must get 404, never data)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import safetensors_bytes, upload
from tests.factories import queued_job, zoo_architecture
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(owner):
    job = queued_job(owner)
    job.claim("w")
    job.record_metrics("train_loss", [(i, 1.0 / (i + 1)) for i in range(100)])
    job.save_artifact("graph", "graph.json", b'{"nodes": [], "edges": []}', "application/json")
    job.succeed("done", {"num_params": 1})
    return job


@pytest.fixture
def checkpoint(api):
    import torch

    content = safetensors_bytes({"w": torch.ones(3)})
    return api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)}).json()


def test_a_script_gets_a_token_with_its_password(owner):
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": "olivia", "password": "owner-pass-123"}
    )
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/v1/jobs/").status_code == 200


def test_anonymous_callers_are_turned_away():
    client = APIClient()
    urls = ["/api/v1/jobs/", "/api/v1/architectures/", "/api/v1/checkpoints/", "/api/v1/zoo/",
            "/api/v1/ghns/"]  # fmt: skip
    for url in urls:
        assert client.get(url).status_code in (401, 403)


def test_the_zoo_lists_every_torchvision_classifier_and_our_families(api):
    body = api.get("/api/v1/zoo/").json()
    names = {entry["name"] for entry in body["results"]}
    assert {"resnet18", "vit_b_16", "mlp", "cnn", "transformer"} <= names
    builtin = api.get("/api/v1/zoo/?family=builtin").json()["results"]
    assert builtin and all(entry["family"] == "builtin" for entry in builtin)


def test_the_hypernetworks_list_names_ours_first_for_anyone_signed_in(
    api, outsider_api, settings, tmp_path
):
    settings.GHN_CHECKPOINT_DIR = tmp_path
    (tmp_path / "ghn3tm8.pt").write_bytes(b"")
    for client in (api, outsider_api):
        names = [g["name"] for g in client.get("/api/v1/ghns/").json()["ghns"]]
        assert names == ["ours", "ghn3tm8"]
    settings.GHN_OURS_PATH = ""
    assert [g["name"] for g in api.get("/api/v1/ghns/").json()["ghns"]] == ["ghn3tm8"]


def test_architectures_list_and_detail_are_owner_only(api, outsider_api, owner):
    architecture = zoo_architecture(owner)
    assert api.get("/api/v1/architectures/").json()["count"] == 1
    assert api.get(f"/api/v1/architectures/{architecture.pk}/").status_code == 200
    assert outsider_api.get("/api/v1/architectures/").json()["count"] == 0
    assert outsider_api.get(f"/api/v1/architectures/{architecture.pk}/").status_code == 404
    assert outsider_api.delete(f"/api/v1/architectures/{architecture.pk}/").status_code == 404
    assert outsider_api.post(f"/api/v1/architectures/{architecture.pk}/inspect/").status_code == 404


def test_an_architecture_graph_before_inspection_says_what_to_do(api, owner):
    architecture = zoo_architecture(owner)
    response = api.get(f"/api/v1/architectures/{architecture.pk}/graph/")
    assert response.status_code == 404 and "inspect" in response.json()["detail"]


def test_an_architecture_with_running_jobs_cannot_be_deleted(api, owner):
    job = queued_job(owner)
    response = api.delete(f"/api/v1/architectures/{job.architecture_id}/")
    assert response.status_code == 409
    job.request_cancel()
    assert api.delete(f"/api/v1/architectures/{job.architecture_id}/").status_code == 204


def test_checkpoints_are_owner_only(api, outsider_api, checkpoint):
    url = f"/api/v1/checkpoints/{checkpoint['id']}/"
    assert api.get(url).json()["tensors"][0]["name"] == "w"
    assert api.get(url + "download/").status_code == 200
    assert outsider_api.get(url).status_code == 404
    assert outsider_api.get(url + "download/").status_code == 404
    assert outsider_api.delete(url).status_code == 404
    assert outsider_api.get("/api/v1/checkpoints/").json()["count"] == 0
    assert api.delete(url).status_code == 204


def test_creating_a_job_queues_it_for_a_worker(api, owner, django_capture_on_commit_callbacks):
    architecture = zoo_architecture(owner)
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/v1/jobs/", {"kind": "inspect", "architecture": architecture.pk}, format="json"
        )
    assert response.status_code == 201
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1


def test_a_job_needs_an_architecture_of_your_own(api, outsider):
    theirs = zoo_architecture(outsider)
    response = api.post("/api/v1/jobs/", {"kind": "inspect"}, format="json")
    assert response.status_code == 400 and "architecture" in response.json()
    response = api.post(
        "/api/v1/jobs/", {"kind": "inspect", "architecture": theirs.pk}, format="json"
    )
    assert response.status_code == 400 and "architecture" in response.json()
    response = api.post("/api/v1/jobs/", {"kind": "bake"}, format="json")
    assert response.status_code == 400 and "kind" in response.json()
    assert not Job.objects.exists()


def test_jobs_are_owner_only(api, outsider_api, finished_job):
    url = f"/api/v1/jobs/{finished_job.pk}/"
    assert api.get(url).json()["status"] == "succeeded"
    for method, suffix in [("get", ""), ("post", "cancel/"), ("post", "retry/"),
                           ("get", "metrics/"), ("get", "artifacts/")]:  # fmt: skip
        assert getattr(outsider_api, method)(url + suffix).status_code == 404
    artifact = finished_job.artifacts.get()
    download = f"{url}artifacts/{artifact.pk}/download/"
    assert outsider_api.get(download).status_code == 404
    assert outsider_api.get("/api/v1/jobs/").json()["count"] == 0


def test_jobs_can_be_filtered_by_status(api, owner, finished_job):
    queued_job(owner)
    assert api.get("/api/v1/jobs/?status=queued").json()["count"] == 1
    assert api.get("/api/v1/jobs/?status=succeeded").json()["count"] == 1


def test_cancel_and_retry_follow_the_status_machine(api, owner):
    job = queued_job(owner)
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 409
    retried = api.post(f"/api/v1/jobs/{job.pk}/retry/")
    assert retried.status_code == 201 and retried.json()["retry_of"] == job.pk
    assert api.post(f"/api/v1/jobs/{retried.json()['id']}/retry/").status_code == 409


def test_metrics_come_at_full_resolution_unless_thinned_on_request(api, finished_job):
    url = f"/api/v1/jobs/{finished_job.pk}/metrics/"
    body = api.get(url).json()
    assert len(body["series"]["train_loss"]) == 100 and body["downsampled"] is False
    thin = api.get(url + "?max_points=10").json()
    assert len(thin["series"]["train_loss"]) == 10 and thin["downsampled"] is True
    assert thin["points"]["train_loss"] == 100
    assert api.get(url + "?series=nope").json()["series"] == {}


def test_artifacts_are_listed_and_downloadable(api, finished_job):
    listing = api.get(f"/api/v1/jobs/{finished_job.pk}/artifacts/").json()
    assert [a["name"] for a in listing] == ["graph.json"]
    response = api.get(listing[0]["download_url"])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{"nodes": [], "edges": []}'


def test_pagination_has_a_hard_maximum(api, owner, settings):
    settings.API_MAX_PAGE_SIZE = 3
    architecture = zoo_architecture(owner)
    for _ in range(5):
        queued_job(owner, architecture)
    body = api.get("/api/v1/jobs/?page_size=1000").json()
    assert body["count"] == 5 and len(body["results"]) == 3 and body["next"]


def test_the_openapi_schema_and_docs_are_served(api, browser):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ["/api/v1/jobs/{id}/cancel/", "/api/v1/architectures/", "/api/v1/checkpoints/"]:
        assert path in text
    docs = browser.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # assets come from an installed package


def test_the_architecture_list_costs_the_same_queries_for_25_rows_as_for_2(
    api, owner, django_assert_max_num_queries
):
    from webapp.architectures.models import create_from_zoo

    for width in range(25):
        architecture = create_from_zoo(owner, "", "mlp", {"hidden": [8 + width]})
        job = queued_job(owner, architecture)
        job.claim("w")
        job.succeed()
    with django_assert_max_num_queries(6):
        body = api.get("/api/v1/architectures/?page_size=25").json()
    assert len(body["results"]) == 25
    assert all(row["latest_inspection"] is not None for row in body["results"])
