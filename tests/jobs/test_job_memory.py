"""Models too big for a worker are refused with a sentence, never left to the kernel's OOM
killer: when they are added (``MAX_MODEL_PARAMS``, counted from the zoo arguments) and when a
train or predict job starts (``JOB_MEMORY_LIMIT``, checked before the model is built)."""

from __future__ import annotations

import pytest

from tests.factories import zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Job

HUGE_MLP = {"in_features": 65536, "hidden": [65536] * 16}
# 67.5 million parameters: 270 MB of float32 weights, about 3 GB for a NiNo-accelerated run.
BIG_MLP = {"in_features": 40, "hidden": [8192, 8192], "num_classes": 10}


@pytest.mark.django_db
def test_a_zoo_model_no_worker_can_build_is_refused_when_added_and_nothing_is_stored(api):
    response = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "mlp", "zoo_args": HUGE_MLP},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "mlp with these arguments has about 68,721,180,682 parameters; this server accepts up "
        "to 2,000,000,000 (MAX_MODEL_PARAMS)."
    )
    assert not Architecture.objects.exists()


@pytest.mark.django_db
def test_the_parameter_limit_is_the_operators_setting(api, settings):
    settings.MAX_MODEL_PARAMS = 100_000
    small = {"source": "zoo", "zoo_name": "mlp", "zoo_args": {"hidden": [64]}}
    assert api.post("/api/v1/architectures/", small, format="json").status_code == 201
    response = api.post("/api/v1/architectures/", {"source": "zoo", "zoo_name": "mlp"},
                        format="json")  # fmt: skip
    assert response.status_code == 400
    assert "about 109,386 parameters" in response.json()["detail"]
    assert "up to 100,000 (MAX_MODEL_PARAMS)" in response.json()["detail"]
    settings.MAX_MODEL_PARAMS = 0  # no limit
    huge = {"source": "zoo", "zoo_name": "mlp", "zoo_args": HUGE_MLP}
    assert api.post("/api/v1/architectures/", huge, format="json").status_code == 201


def train_parameters(owner) -> dict:
    from webapp.jobs.kinds import clean_parameters

    quick = {"dataset": "mnist1d", "steps": 20, "period": 20, "eval_every": 20,
             "batch_size": 64, "device": "cpu"}  # fmt: skip
    return clean_parameters("train", quick, owner)


@pytest.mark.django_db(transaction=True)
def test_a_train_job_above_the_memory_limit_fails_before_the_model_is_built(owner, settings):
    from workers.tasks import train

    settings.JOB_MEMORY_LIMIT = 10**9
    architecture = zoo_architecture(owner, "mlp", BIG_MLP)
    job = Job.objects.create(owner=owner, kind="train", architecture=architecture,
                             parameters=train_parameters(owner))  # fmt: skip
    train.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == (
        "This train job needs about 3.0 GB of memory for a model with 67,534,858 parameters; "
        "a job on this server may use up to 1.0 GB (JOB_MEMORY_LIMIT)."
    )
    # Refused before the data set was loaded or the model built: no progress, nothing made.
    assert job.progress == 0.0 and not job.metrics.exists() and not job.artifacts.exists()


@pytest.mark.django_db(transaction=True)
def test_a_predict_job_above_the_memory_limit_fails_before_the_model_is_built(owner, settings):
    from workers.tasks import predict

    settings.JOB_MEMORY_LIMIT = 10**9
    architecture = zoo_architecture(owner, "mlp", BIG_MLP)
    job = Job.objects.create(owner=owner, kind="predict", architecture=architecture,
                             parameters={"ghn": "ours"})  # fmt: skip
    predict.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("This predict job needs about 1.1 GB of memory")
    assert "up to 1.0 GB (JOB_MEMORY_LIMIT)" in job.error
    assert job.progress == 0.0 and not job.artifacts.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_within_the_limit_or_with_no_limit_runs(owner, settings):
    from workers.tasks import train

    architecture = zoo_architecture(owner, "mlp", {"in_features": 40, "hidden": [32]})
    for limit in (10**8, 0):  # 1,642 parameters need about 66 kB; 0 means no limit
        settings.JOB_MEMORY_LIMIT = limit
        job = Job.objects.create(owner=owner, kind="train", architecture=architecture,
                                 parameters=train_parameters(owner))  # fmt: skip
        train.apply(args=[job.pk])
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error


def test_the_default_limit_is_a_fraction_of_this_machines_memory(tmp_path):
    from workers.catalog.estimates import default_job_memory_limit

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000 kB\n")
    assert default_job_memory_limit(0.75, str(meminfo)) == 12_288_000_000
    assert default_job_memory_limit(0.75, str(tmp_path / "missing")) == 0  # unknown: no limit
