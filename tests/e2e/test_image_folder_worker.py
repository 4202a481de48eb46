"""End to end: an image-folder zip uploaded through the API trains on a real Celery worker."""

from __future__ import annotations

import pytest

from tests.conftest import upload
from tests.e2e.test_e2e_worker import wait_for
from tests.image_zips import class_folders, zip_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_script_uploads_class_folders_and_trains_a_cnn_on_them(api, worker):
    content = zip_bytes(class_folders({"left": 15, "right": 15}, size=(12, 12)))
    dataset = api.post("/api/v1/datasets/", {"file": upload("lr.zip", content)})
    assert dataset.status_code == 201, dataset.json()
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "cnn",
         "zoo_args": {"in_channels": 1, "channels": [4], "num_classes": 2}},
        format="json",
    ).json()  # fmt: skip
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture["id"],
         "parameters": {"dataset_id": dataset.json()["id"], "steps": 10, "period": 5,
                        "eval_every": 5, "batch_size": 8, "accelerator": "none",
                        "device": "cpu"}},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.json()
    job, _ = wait_for(api, created.json()["id"])
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["dataset"]["input_shape"] == [1, 12, 12]
    assert job["result"]["dataset"]["num_train"] == 26
