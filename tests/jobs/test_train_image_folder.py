"""Train jobs on the data sets people have: an uploaded image-folder zip trains to the end, a
torchvision set by name on a worker without internet fails fast with a sentence, and where the
deployment says downloads are off it is refused before a job exists."""

from __future__ import annotations

import time

import pytest

from tests.conftest import upload
from tests.factories import zoo_architecture
from tests.image_zips import class_folders, zip_bytes
from webapp.jobs.models import Job

CNN_RGB = {"in_channels": 3, "channels": [8], "num_classes": 3}


def run_train(owner, architecture, parameters) -> Job:
    from workers.tasks import train

    job = Job.objects.create(owner=owner, kind="train", architecture=architecture,
                             parameters=parameters)  # fmt: skip
    train.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def parameters(owner, **chosen) -> dict:
    from webapp.jobs.kinds import clean_parameters

    quick = {"steps": 20, "period": 10, "eval_every": 10, "batch_size": 16, "lr": 0.01,
             "device": "cpu", "accelerator": "none"}  # fmt: skip
    return clean_parameters("train", quick | chosen, owner)


@pytest.mark.django_db(transaction=True)
def test_a_person_trains_a_cnn_on_the_image_folder_they_uploaded(owner, api):
    content = zip_bytes(class_folders({"circle": 12, "square": 12, "star": 12}, mode="RGB",
                                      size=(16, 16)))  # fmt: skip
    dataset = api.post("/api/v1/datasets/", {"file": upload("shapes.zip", content)}).json()
    assert dataset["summary"]["input_shape"] == [3, 16, 16]
    architecture = zoo_architecture(owner, "cnn", CNN_RGB)
    job = run_train(owner, architecture, parameters(owner, dataset_id=dataset["id"]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["dataset"]["input_shape"] == [3, 16, 16]
    assert job.result["dataset"]["num_train"] == dataset["summary"]["samples"] == 33
    assert job.result["dataset"]["num_test"] == 3 and job.result["dataset"]["num_classes"] == 3
    assert "test_accuracy" in " ".join(job.metric_series())


@pytest.mark.django_db(transaction=True)
def test_a_torchvision_set_on_an_offline_worker_fails_fast_saying_to_upload_it(
    owner, settings, tmp_path
):
    settings.DATASET_CACHE_DIR = tmp_path / "cache"
    architecture = zoo_architecture(owner, "cnn", CNN_RGB | {"num_classes": 10})
    started = time.monotonic()
    job = run_train(owner, architecture, parameters(owner, dataset="cifar10"))
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("Could not download CIFAR10: no network")
    assert "upload it as an image-folder zip instead" in job.error
    assert time.monotonic() - started < 30 and not job.metrics.exists()


@pytest.mark.django_db
def test_with_downloads_off_the_api_refuses_a_torchvision_set_before_queueing(
    api, owner, settings
):
    settings.DATASET_DOWNLOADS = False
    architecture = zoo_architecture(owner, "cnn", CNN_RGB | {"num_classes": 10})
    response = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture.pk, "parameters": {"dataset": "cifar10"}},
        format="json",
    )
    assert response.status_code == 400
    assert "downloads are off on this deployment" in str(response.json()["parameters"]["dataset"])
    assert not Job.objects.exists()
    settings.DATASET_DOWNLOADS = True
    response = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture.pk, "parameters": {"dataset": "cifar10"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
