"""The train job: parameters validated before queueing, and runs on a worker that report live
metrics, nowcast marks, a checkpoint, steps to target and the speed-up over the plain run."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.conftest import cancel_at_progress_report, upload
from tests.factories import zoo_architecture
from webapp.jobs.models import Job

MLP_1D = {"in_features": 40, "hidden": [32], "num_classes": 10}


def quick(**overrides) -> dict:
    """A train job small enough for a test: MNIST-1D, 60 steps, a nowcast every 20."""
    parameters = {"dataset": "mnist1d", "steps": 60, "period": 20, "eval_every": 20,
                  "batch_size": 64, "lr": 0.003, "device": "cpu"}  # fmt: skip
    parameters.update(overrides)
    return {key: value for key, value in parameters.items() if value is not None}


@pytest.mark.django_db
class TestParameters:
    def test_defaults_are_the_published_fm16_protocol(self, api, owner):
        architecture = zoo_architecture(owner, "cnn")
        response = api.post(
            "/api/v1/jobs/",
            {"kind": "train", "architecture": architecture.pk,
             "parameters": {"dataset": "fashion_mnist"}},
            format="json",
        )  # fmt: skip
        assert response.status_code == 201, response.json()
        parameters = response.json()["parameters"]
        assert parameters["lr"] == 0.006 and parameters["batch_size"] == 128
        assert parameters["steps"] == 10_000 and parameters["period"] == 1000
        assert parameters["optimizer"] == "adamw" and parameters["accelerator"] == "nino"

    @pytest.mark.parametrize(
        ("parameters", "field"),
        [
            ({}, "non_field_errors"),
            ({"dataset": "mnist1d", "dataset_id": 3}, "non_field_errors"),
            ({"dataset": "imagenet"}, "dataset"),
            ({"dataset": "mnist1d", "period": 12}, "period"),
            ({"dataset": "mnist1d", "accelerator": "none", "compare": True}, "compare"),
            ({"dataset": "mnist1d", "lr": -1}, "lr"),
            ({"dataset_id": 999}, "dataset_id"),
        ],
    )
    def test_bad_parameters_are_refused_before_anything_is_queued(
        self, api, owner, parameters, field
    ):
        architecture = zoo_architecture(owner, "mlp", MLP_1D)
        response = api.post(
            "/api/v1/jobs/",
            {"kind": "train", "architecture": architecture.pk, "parameters": parameters},
            format="json",
        )
        assert response.status_code == 400
        assert field in response.json()["parameters"]
        assert not Job.objects.exists()

    def test_inspect_jobs_take_no_parameters(self, api, owner):
        architecture = zoo_architecture(owner)
        response = api.post(
            "/api/v1/jobs/",
            {"kind": "inspect", "architecture": architecture.pk, "parameters": {"x": 1}},
            format="json",
        )
        assert response.status_code == 400

    def test_the_train_form_starts_a_job(self, browser, owner):
        architecture = zoo_architecture(owner, "mlp", MLP_1D)
        page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
        assert "Start training" in page and "Fashion-MNIST" in page
        form = {"dataset": "builtin:mnist1d", "accelerator": "nino", "compare": "on",
                "optimizer": "adamw", "lr": "0.003", "batch_size": "64", "steps": "100",
                "eval_every": "20", "period": "50", "targets": "0.3, 0.4"}  # fmt: skip
        response = browser.post(f"/architectures/{architecture.pk}/train/", form)
        job = Job.objects.get(kind="train")
        assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
        assert job.parameters["targets"] == [0.3, 0.4] and job.parameters["compare"] is True
        form["targets"] = "lots"
        response = browser.post(f"/architectures/{architecture.pk}/train/", form)
        # Refused: back to the form (Post/Redirect/Get), the reason shown there.
        assert response.status_code == 303
        assert "targets" in browser.get(response.url).content.decode()


def run_train(owner, architecture, parameters, checkpoint=None) -> Job:
    from workers.tasks import train

    job = Job.objects.create(owner=owner, kind="train", architecture=architecture,
                             checkpoint=checkpoint, parameters=parameters)  # fmt: skip
    train.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def full_parameters(owner, **overrides) -> dict:
    from webapp.jobs.kinds import clean_parameters

    return clean_parameters("train", quick(**overrides), owner)


@pytest.mark.django_db(transaction=True)
def test_nino_and_the_plain_optimizer_train_side_by_side(owner):
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    job = run_train(owner, architecture, full_parameters(owner, compare=True, targets=[0.2]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    runs = job.result["runs"]
    assert set(runs) == {"nino", "plain"}
    assert runs["nino"]["nowcasts"] == 3 and runs["plain"]["nowcasts"] == 0
    assert runs["nino"]["steps_done"] == runs["plain"]["steps_done"] == 60
    assert "0.2" in job.result["speedup"]
    series = job.metric_series()
    assert [step for step, _ in series["nino:nowcast"]] == [20, 40, 60]
    assert {"nino:train_loss", "plain:train_loss", "nino:test_accuracy"} <= set(series)
    assert job.artifacts.get(name="model.safetensors").bytes > 0


@pytest.mark.django_db(transaction=True)
def test_an_uploaded_data_set_and_a_starting_checkpoint_can_be_used(owner, api):
    import torch
    from safetensors.torch import save

    from workers.zoo.build import build_model

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(300, 40)).astype(np.float32), y=rng.integers(0, 10, 300))
    dataset = api.post("/api/v1/datasets/", {"file": upload("d.npz", buffer.getvalue())}).json()
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    torch.manual_seed(5)
    weights = save(build_model("mlp", MLP_1D).state_dict())
    checkpoint = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", weights)})
    from webapp.checkpoints.models import Checkpoint

    parameters = full_parameters(owner, dataset=None, dataset_id=dataset["id"], accelerator="none")
    job = run_train(
        owner, architecture, parameters, Checkpoint.objects.get(pk=checkpoint.json()["id"])
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["dataset"]["num_train"] == 270


@pytest.mark.django_db(transaction=True)
def test_a_model_that_does_not_fit_the_data_fails_before_training(owner):
    architecture = zoo_architecture(owner, "cnn")  # 28×28 images, not 40-step sequences
    job = run_train(owner, architecture, full_parameters(owner))
    assert job.status == Job.Status.FAILED
    assert "cannot take inputs" in job.error and not job.metrics.exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_mid_run_saves_a_checkpoint_and_ends_cancelled(owner, monkeypatch):
    cancel_at_progress_report(monkeypatch, 4)
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    job = run_train(owner, architecture, full_parameters(owner, steps=2000))
    assert job.status == Job.Status.CANCELLED, job.error
    assert job.artifacts.filter(name="model.safetensors").exists()
    steps = [step for step, _ in job.metric_series()["nino:train_loss"]]
    assert steps and max(steps) < 2000


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("accelerator", ["ours", "wnn"])
def test_our_own_nino_and_the_wnn_baseline_accelerate_too(owner, accelerator):
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    job = run_train(owner, architecture, full_parameters(owner, accelerator=accelerator))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["runs"][accelerator]["nowcasts"] == 3
