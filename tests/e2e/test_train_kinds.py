"""Issue 10, item 6: a train job for every kind of model, through a real Celery worker — an
uploaded ``.pt2`` ResNet (BatchNorm, downsample shortcut), Hugging Face GPT-2 and Llama configs
(the Llama with NiNo), from the API and from the page. Each job is a few dozen steps on small
uploaded data sets."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import upload
from tests.e2e.test_e2e_worker import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TINY_GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2,
             "n_embd": 32, "n_head": 2, "vocab_size": 256, "n_positions": 64}  # fmt: skip
TINY_LLAMA = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 32,
              "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 64, "vocab_size": 256,
              "tie_word_embeddings": False}  # fmt: skip


class Block(nn.Module):
    """A ResNet basic block; with a stride or a width change, a 1×1 convolution shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())  # fmt: skip
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def resnet_pt2(tmp_path) -> bytes:
    """The archive a person writes with torch.export.save, with a dynamic batch axis."""
    torch.manual_seed(0)
    model = SmallResNet()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        model, (torch.randn(2, 1, 28, 28),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / "resnet.pt2"
    torch.export.save(program, path)
    return path.read_bytes()


def fashion_subset() -> bytes:
    """2,000 training and 500 test Fashion-MNIST images as an uploaded .npz."""
    from workers.data.datasets import fashion_mnist

    data = fashion_mnist()
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x=data.x_train[:2000].numpy(), y=data.y_train[:2000].numpy(),
        x_test=data.x_test[:500].numpy(), y_test=data.y_test[:500].numpy(),
    )  # fmt: skip
    return buffer.getvalue()


def small_text() -> bytes:
    from workers.data.text import pydoc_text

    return pydoc_text()[:40_000].encode("utf-8")


def add_dataset(api, name: str, content: bytes) -> int:
    response = api.post("/api/v1/datasets/", {"file": upload(name, content)})
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def train(api, architecture: int, parameters: dict) -> dict:
    created = api.post(
        "/api/v1/jobs/",
        {"kind": "train", "architecture": architecture, "parameters": parameters},
        format="json",
    )
    assert created.status_code == 201, created.json()
    job, _ = wait_for(api, created.json()["id"], timeout=180)
    return job


def test_a_script_trains_an_uploaded_pt2_resnet_with_nino_and_the_plain_optimizer(
    api, worker, tmp_path
):
    from webapp.jobs.models import Job

    architecture = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("resnet.pt2",
                                                                      resnet_pt2(tmp_path))}
    ).json()  # fmt: skip
    dataset = add_dataset(api, "fashion-2k.npz", fashion_subset())
    # NiNo with the plain optimizer alongside: the exported program's graph is traced on the
    # data's own batch shape (1×28×28), not a guessed 3-channel image.
    job = train(api, architecture["id"], {
        "dataset_id": dataset, "accelerator": "nino", "compare": True, "optimizer": "adam",
        "lr": 0.01, "steps": 60, "eval_every": 30, "period": 30, "batch_size": 64,
        "device": "cpu",
    })  # fmt: skip
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    assert job["result"]["runs"]["nino"]["nowcasts"] >= 1
    run = job["result"]["runs"]["plain"]
    assert run["steps_done"] == 60
    # Ten classes: chance is 0.1; 60 Adam steps of a ResNet get well past it.
    assert run["final_metrics"]["accuracy"] > 0.25
    # Evaluation ran in eval mode (running statistics, deterministic): the stored BatchNorm
    # statistics moved away from their initial values while training.
    weights = Job.objects.get(pk=job["id"]).artifacts.get(name="model.safetensors")
    from safetensors.torch import load

    with weights.file.open("rb") as handle:
        state = load(handle.read())
    assert not torch.allclose(state["stem.1.running_mean"], torch.zeros(8))


def test_a_script_trains_a_hugging_face_gpt2_config_character_level(api, worker):
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "hf_config", "file": upload("config.json", json.dumps(TINY_GPT2).encode())},
    ).json()
    dataset = add_dataset(api, "pydoc.txt", small_text())
    job = train(api, architecture["id"], {
        "dataset_id": dataset, "accelerator": "none", "optimizer": "adam", "lr": 0.003,
        "steps": 40, "eval_every": 20, "batch_size": 16, "device": "cpu",
    })  # fmt: skip
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    run = job["result"]["runs"]["plain"]
    assert run["steps_done"] == 40
    # Uniform over the 256 ids is perplexity 256; after 40 steps it is far below.
    assert run["final_metrics"]["perplexity"] < 60
    assert job["result"]["dataset"]["input_shape"] == [64]  # the config's n_positions
    metrics = api.get(f"/api/v1/jobs/{job['id']}/metrics/").json()["series"]
    assert [step for step, _ in metrics["plain:test_perplexity"]] == [20, 40]
    # The trained weights come back as transformers saves them (the tied head once) and load
    # into the config's model.
    from safetensors.torch import load

    from workers.zoo.hf import build_hf_model, load_hf_weights

    artifact = next(a for a in job["artifacts"] if a["name"] == "model.safetensors")
    state = load(b"".join(api.get(artifact["download_url"]).streaming_content))
    assert "lm_head.weight" not in state
    load_hf_weights(build_hf_model(TINY_GPT2), state)


def test_a_script_trains_a_hugging_face_llama_config_with_nino_beside_the_plain_optimizer(
    api, worker
):
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "hf_config", "file": upload("config.json", json.dumps(TINY_LLAMA).encode())},
    ).json()
    dataset = add_dataset(api, "pydoc.txt", small_text())
    # The job traces the exported program on its own window, not on the data's 64-token batch
    # (which the program's guards refuse): NiNo nowcasts every parameter.
    job = train(api, architecture["id"], {
        "dataset_id": dataset, "accelerator": "nino", "compare": True, "optimizer": "adam",
        "lr": 0.003, "steps": 40, "eval_every": 20, "period": 20, "batch_size": 16,
        "device": "cpu",
    })  # fmt: skip
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    nino = job["result"]["runs"]["nino"]
    assert nino["nowcasts"] >= 1 and nino["steps_done"] == 40
    assert job["result"]["runs"]["plain"]["steps_done"] == 40
    assert nino["final_metrics"]["perplexity"] < 256


def test_a_person_trains_a_hugging_face_config_from_its_page(api, browser, worker):
    architecture = api.post(
        "/api/v1/architectures/",
        {"source": "hf_config", "file": upload("config.json", json.dumps(TINY_GPT2).encode())},
    ).json()
    dataset = add_dataset(api, "pydoc.txt", small_text())
    response = browser.post(f"/architectures/{architecture['id']}/train/", {
        "dataset": f"upload:{dataset}", "accelerator": "none", "optimizer": "adam",
        "lr": "0.003", "batch_size": "16", "steps": "20", "eval_every": "10", "period": "1000",
        "targets": "",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-2000:]
    job_id = int(response["Location"].rstrip("/").split("/")[-1])
    job, _ = wait_for(api, job_id, timeout=180)
    assert job["status"] == "succeeded", (job["error"], worker.log()[-3000:])
    page = browser.get(f"/jobs/{job_id}/").content.decode()
    assert "test perplexity" in page.replace("_", " ") or "perplexity" in page
