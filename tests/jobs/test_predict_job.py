"""The predict job: a GHN installed by the operator predicts an architecture's parameters; the
prediction is stored, reported, evaluated against random initialisation, and can start a
train job. These tests install a small GHN-3 with random weights next to our own ("ours"),
which exercises the whole path quickly; its predictions are not meant to be good (ours is
tested end to end in test_e2e_worker.py and measured in bench/ghn.py)."""

from __future__ import annotations

import pytest
import torch

from tests.factories import zoo_architecture
from webapp.jobs.models import Job

MLP_1D = {"in_features": 40, "hidden": [32], "num_classes": 10}


@pytest.fixture
def installed_ghn(settings, tmp_path):
    from workers.ghn import GHN3, GHN3Config

    torch.manual_seed(0)
    config = GHN3Config(hid=16, max_shape=(16, 16, 3, 3), num_classes=10, heads=2, layers=1)
    ghn = GHN3(config)
    settings.GHN_CHECKPOINT_DIR = tmp_path / "ghn"
    settings.GHN_CHECKPOINT_DIR.mkdir()
    torch.save(
        {"state_dict": ghn.state_dict(), "config": config.to_dict()},
        settings.GHN_CHECKPOINT_DIR / "tiny-ghn3.pt",
    )
    return "tiny-ghn3"


@pytest.mark.django_db
def test_an_unknown_ghn_is_refused_and_the_installed_ones_are_named(api, owner, installed_ghn):
    architecture = zoo_architecture(owner, "cnn")
    response = api.post(
        "/api/v1/jobs/",
        {"kind": "predict", "architecture": architecture.pk, "parameters": {"ghn": "ghn3xlm16"}},
        format="json",
    )
    assert response.status_code == 400
    assert "ours, tiny-ghn3" in str(response.json()["parameters"])
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_page_explains_how_to_install_a_ghn_when_there_is_none(
    browser, owner, settings, tmp_path
):
    settings.GHN_CHECKPOINT_DIR = tmp_path / "empty"
    settings.GHN_OURS_PATH = ""
    architecture = zoo_architecture(owner, "cnn")
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert "No hypernetwork is installed" in page and "workers.ghn.convert" in page


@pytest.mark.django_db(transaction=True)
def test_a_prediction_is_stored_evaluated_and_trained_from(owner, installed_ghn, browser):
    from safetensors.torch import load

    from workers.tasks import predict

    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    response = browser.post(
        f"/architectures/{architecture.pk}/predict/",
        {"ghn": installed_ghn, "evaluate_on": "mnist1d", "then_train": "on"},
    )
    job = Job.objects.get(kind="predict")
    assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
    predict.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["predicted_params"] == job.result["total_params"] == 1642
    assert 0 <= job.result["accuracy_predicted"] <= 1 and 0 <= job.result["accuracy_random"] <= 1
    weights = load(job.artifacts.get(name="predicted.safetensors").file.read())
    assert set(weights) == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}
    train = Job.objects.get(pk=job.result["train_job"])
    assert train.kind == "train" and train.checkpoint.architecture == architecture
    assert train.parameters["dataset"] == "mnist1d"
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert f"Follow the training (job #{train.pk})" in page
    assert "With no training, on mnist1d" in page


@pytest.mark.django_db(transaction=True)
def test_a_model_above_the_configured_size_is_refused_with_the_limit_named(
    owner, installed_ghn, api, settings
):
    from workers.tasks import predict

    settings.GHN_MAX_PARAMS = 1000
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "predict", "architecture": architecture.pk, "parameters": {"ghn": installed_ghn}},
        format="json",
    ).json()
    predict.apply(args=[created["id"]])
    job = Job.objects.get(pk=created["id"])
    assert job.status == Job.Status.FAILED
    assert "1,642 parameters" in job.error and "limited to 1,000" in job.error
    assert "GHN_MAX_PARAMS" in job.error and not job.artifacts.exists()


@pytest.mark.django_db(transaction=True)
def test_a_prediction_that_fails_queues_no_training(owner, installed_ghn, api, settings):
    from workers.tasks import predict

    settings.GHN_MAX_PARAMS = 1000
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    parameters = {"ghn": installed_ghn, "then_train": {"dataset": "mnist1d"}}
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "predict", "architecture": architecture.pk, "parameters": parameters},
        format="json",
    ).json()
    predict.apply(args=[created["id"]])
    assert Job.objects.get(pk=created["id"]).status == Job.Status.FAILED
    assert not Job.objects.filter(kind="train").exists()
