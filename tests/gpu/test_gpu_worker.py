"""On a GPU machine, a train job asked to run on ``cuda`` runs there through a real worker."""

from __future__ import annotations

import json

import pytest

from tests.conftest import upload
from tests.e2e.test_e2e_worker import wait_for

pytestmark = [pytest.mark.gpu, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_nino_train_job_runs_on_cuda_through_a_real_worker(api, worker):
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "mlp",
         "zoo_args": {"in_features": 40, "hidden": [32], "num_classes": 10}},
        format="json",
    ).json()  # fmt: skip
    parameters = {"dataset": "mnist1d", "steps": 200, "period": 50, "eval_every": 25,
                  "batch_size": 64, "lr": 0.003, "compare": True, "device": "cuda"}  # fmt: skip
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture["id"], "parameters": parameters},
        format="json",
    ).json()
    job, _ = wait_for(api, created["id"], timeout=240)
    # The worker refuses "cuda" without a device, so success means it trained on the GPU.
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["runs"]["nino"]["nowcasts"] == 4
    assert job["result"]["evaluated_after_jumps"] == 50


def test_a_hugging_face_config_trains_on_cuda_through_a_real_worker(api, worker):
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 256, "max_position_embeddings": 128}  # fmt: skip
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "hf_config", "file": upload("config.json", json.dumps(config).encode())},
    ).json()
    created = api.post("/api/v1/jobs/", {
        "kind": "train", "architecture": architecture["id"],
        "parameters": {"dataset": "shakespeare", "accelerator": "none", "optimizer": "adam",
                       "lr": 0.003, "steps": 100, "eval_every": 50, "batch_size": 32,
                       "device": "cuda"},
    }, format="json").json()  # fmt: skip
    job, _ = wait_for(api, created["id"], timeout=300)
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["runs"]["plain"]["final_metrics"]["perplexity"] < 40
