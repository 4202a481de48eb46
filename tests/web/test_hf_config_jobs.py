"""Jobs on a Hugging Face config, run in-process by the task adapters: inspect builds it from
the config (never a download), train fits a character vocabulary to the config's."""

from __future__ import annotations

import json

import pytest

from tests.conftest import upload
from webapp.architectures.models import create_from_upload
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256,
        "n_positions": 64}  # fmt: skip


def hf_architecture(owner, config: dict):
    return create_from_upload(
        owner, "", "hf_config", upload("config.json", json.dumps(config).encode())
    )


def run(job: Job) -> Job:
    from workers import tasks

    getattr(tasks, job.kind).apply(args=[job.pk])
    job.refresh_from_db()
    return job


def test_inspecting_a_config_records_its_count_graphs_and_nino_readiness(owner):
    architecture = hf_architecture(owner, GPT2)
    job = run(Job.objects.create(owner=owner, kind="inspect", architecture=architecture))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["num_params"] == 35_712
    assert job.result["input_dtype"] == "int64" and job.result["output_shape"] == [16, 256]
    architecture.refresh_from_db()
    assert architecture.inspected_at is not None and architecture.num_params == 35_712
    # The parameter graph reads a transformers GPT-2 (Conv1D, tied head) in full, which the
    # checks before a NiNo job is queued rely on.
    nino = architecture.summary["nino"]
    assert nino["supported"] is True
    assert nino["nowcast"] == nino["total"] == 35_712 and nino["left"] == []
    graph = job.artifacts.get(name="graph.json").read_json()
    assert len(graph["nodes"]) > 20


def test_a_config_trains_on_the_built_in_shakespeare_text_with_adam(owner):
    architecture = hf_architecture(owner, GPT2)
    job = Job.objects.create(owner=owner, kind="train", architecture=architecture, parameters={
        "dataset": "shakespeare", "accelerator": "none", "optimizer": "adam", "lr": 0.003,
        "steps": 10, "eval_every": 10, "batch_size": 8, "device": "cpu",
    })  # fmt: skip
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["dataset"]["input_shape"] == [64]
    assert job.result["dataset"]["num_classes"] == 84  # Shakespeare's characters, of 256 ids
    assert job.result["runs"]["plain"]["final_metrics"]["perplexity"] < 256


def test_a_config_whose_vocabulary_is_smaller_than_the_texts_fails_with_a_sentence(owner):
    architecture = hf_architecture(owner, {**GPT2, "vocab_size": 50})
    job = Job.objects.create(owner=owner, kind="train", architecture=architecture, parameters={
        "dataset": "shakespeare", "accelerator": "none", "steps": 5, "device": "cpu",
    })  # fmt: skip
    job = run(job)
    assert job.status == Job.Status.FAILED
    assert "vocabulary has 50 ids, but 'shakespeare' has 84 distinct characters" in job.error


def test_a_nino_job_on_a_config_nowcasts_or_says_why_the_graph_cannot_read_it(owner):
    architecture = hf_architecture(owner, GPT2)
    job = Job.objects.create(owner=owner, kind="train", architecture=architecture, parameters={
        "dataset": "shakespeare", "accelerator": "nino", "optimizer": "adam", "lr": 0.003,
        "steps": 10, "period": 5, "eval_every": 10, "batch_size": 8, "device": "cpu",
    })  # fmt: skip
    job = run(job)
    if job.status == Job.Status.SUCCEEDED:  # the traced parameter graph reads transformers
        assert job.result["runs"]["nino"]["nowcasts"] == 2
    else:
        assert job.status == Job.Status.FAILED
        assert "unexpected error" not in job.error and job.error.strip()


def test_a_train_job_starts_from_the_weights_uploaded_with_the_config(owner):
    from safetensors.torch import save

    from workers.tensors import without_aliases
    from workers.zoo.hf import build_hf_model

    # What transformers writes for a tied GPT-2: the head is not in the file.
    state = without_aliases(build_hf_model(GPT2).state_dict())
    assert "lm_head.weight" not in state
    architecture = create_from_upload(
        owner, "", "hf_config", upload("config.json", json.dumps(GPT2).encode()),
        weights=upload("model.safetensors", save({k: v.contiguous() for k, v in state.items()})),
    )  # fmt: skip
    checkpoint = architecture.checkpoints.get()
    job = Job.objects.create(
        owner=owner, kind="train", architecture=architecture, checkpoint=checkpoint,
        parameters={"dataset": "pydoc", "accelerator": "none", "steps": 5, "eval_every": 5,
                    "batch_size": 8, "device": "cpu"},
    )  # fmt: skip
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
