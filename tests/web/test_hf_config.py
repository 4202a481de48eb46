"""Adding a Hugging Face causal-LM config.json (and optional .safetensors weights), on the page
and through the API: checked without torch, refused with a sentence, nothing left behind."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import safetensors_bytes, stored_files, upload
from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint

pytestmark = pytest.mark.django_db

GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 32,
        "n_head": 2, "vocab_size": 256, "n_positions": 64}  # fmt: skip
GPT2_PARAMS = 35_712  # sum(p.numel()) of the built model, tied head counted once


def config_file(config: dict, name: str = "config.json"):
    return upload(name, json.dumps(config).encode())


def gpt2_weights(drop_head: bool = True) -> bytes:
    from workers.zoo.hf import build_hf_model

    state = build_hf_model(GPT2).state_dict()
    if drop_head:  # transformers saves a tied head once
        state.pop("lm_head.weight")
    return safetensors_bytes({k: v.contiguous() for k, v in state.items()})


def nothing_stored(settings) -> bool:
    return (
        not Architecture.objects.exists()
        and not Checkpoint.objects.exists()
        and stored_files(settings.MEDIA_ROOT) == []
    )


def test_a_script_adds_a_gpt2_config_and_sees_its_exact_size(api):
    response = api.post(
        "/api/v1/architectures/", {"source": "hf_config", "file": config_file(GPT2)}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source"] == "hf_config"
    assert body["num_params"] == GPT2_PARAMS
    assert body["zoo_args"] == {"model_type": "gpt2", "context": 64}
    assert body["name"].startswith("config.json · ")


def test_checking_a_config_on_the_web_tier_never_imports_torch_or_transformers():
    import subprocess

    code = (
        "import sys, json\n"
        "from workers.safety.hf_config import check_hf_config\n"
        f"check_hf_config(json.dumps({GPT2!r}).encode())\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize(
    ("config", "sentence"),
    [
        ({**GPT2, "auto_map": {"AutoModelForCausalLM": "modeling.MyModel"}},
         "never runs code from a model repository"),
        ({**GPT2, "model_type": "bert"}, "'bert' is not a causal-LM family"),
        ({**GPT2, "n_embd": 33}, "n_embd (33) must be a multiple of n_head (2)"),
        ({"model_type": "llama"}, "MAX_MODEL_PARAMS"),  # Llama-2 7B by transformers' defaults
    ],
)  # fmt: skip
def test_a_config_the_server_will_not_build_is_refused_with_a_sentence(
    api, settings, config, sentence
):
    settings.MAX_MODEL_PARAMS = 1_000_000_000
    response = api.post(
        "/api/v1/architectures/", {"source": "hf_config", "file": config_file(config)}
    )
    assert response.status_code == 400
    assert sentence in json.dumps(response.json())
    assert nothing_stored(settings)


def test_a_file_that_is_not_json_or_too_big_is_refused(api, settings):
    not_json = upload("config.json", b"{not json")
    bad = api.post("/api/v1/architectures/", {"source": "hf_config", "file": not_json})
    assert bad.status_code == 400 and "not valid UTF-8 JSON" in bad.json()["detail"]
    big = config_file({**GPT2, "comment": "x" * 70_000})
    response = api.post("/api/v1/architectures/", {"source": "hf_config", "file": big})
    assert response.status_code == 400 and "a few kB" in response.json()["detail"]
    yaml = config_file(GPT2, "config.yaml")
    wrong = api.post("/api/v1/architectures/", {"source": "hf_config", "file": yaml})
    assert wrong.status_code == 400 and "wrong file type" in wrong.json()["detail"]
    assert nothing_stored(settings)


def test_the_same_config_twice_is_a_duplicate(api):
    first = api.post("/api/v1/architectures/", {"source": "hf_config", "file": config_file(GPT2)})
    again = api.post("/api/v1/architectures/", {"source": "hf_config", "file": config_file(GPT2)})
    assert first.status_code == 201 and again.status_code == 409


def test_weights_uploaded_with_a_config_become_its_checkpoint(api, owner):
    response = api.post("/api/v1/architectures/", {
        "source": "hf_config", "file": config_file(GPT2),
        "weights": upload("model.safetensors", gpt2_weights()),
    })  # fmt: skip
    assert response.status_code == 201, response.json()
    architecture = Architecture.objects.get(pk=response.json()["id"])
    checkpoint = architecture.checkpoints.get()
    assert checkpoint.owner == owner and checkpoint.format == "safetensors"
    assert checkpoint.num_elements == GPT2_PARAMS


def test_weights_too_small_for_the_config_are_refused_and_nothing_is_stored(api, settings):
    import torch

    small = safetensors_bytes({"transformer.wte.weight": torch.zeros(256, 32)})
    response = api.post("/api/v1/architectures/", {
        "source": "hf_config", "file": config_file(GPT2),
        "weights": upload("model.safetensors", small),
    })  # fmt: skip
    assert response.status_code == 400
    assert "hold 8,192 values but this config has 35,712 parameters" in response.json()["detail"]
    assert nothing_stored(settings)


def test_weights_must_be_safetensors_and_only_go_with_a_config(api, settings):
    pickled = api.post("/api/v1/architectures/", {
        "source": "hf_config", "file": config_file(GPT2),
        "weights": upload("pytorch_model.bin", b"\x80\x04K\x01."),
    })  # fmt: skip
    assert pickled.status_code == 400 and "wrong file type" in pickled.json()["detail"]
    zoo = api.post("/api/v1/architectures/", {
        "source": "export", "file": upload("model.pt2", b"PK"),
        "weights": upload("model.safetensors", gpt2_weights()),
    })  # fmt: skip
    assert zoo.status_code == 400
    assert nothing_stored(settings)


def test_a_person_adds_a_config_on_the_page_with_its_weights(browser, owner):
    page = browser.get("/architectures/new/")
    assert b"Hugging Face config (config.json)" in page.content
    response = browser.post("/architectures/new/", {
        "source": "hf_config", "name": "tiny gpt-2", "file": config_file(GPT2),
        "weights": upload("model.safetensors", gpt2_weights()), "save": "1",
    })  # fmt: skip
    architecture = Architecture.objects.get(owner=owner)
    assert response.status_code == 302 and response["Location"] == architecture.get_absolute_url()
    assert architecture.name == "tiny gpt-2" and architecture.num_params == GPT2_PARAMS
    assert architecture.checkpoints.count() == 1


def test_a_refused_config_on_the_page_shows_the_sentence(browser, settings):
    response = browser.post("/architectures/new/", {
        "source": "hf_config", "file": config_file({**GPT2, "auto_map": {}}), "save": "1",
    })  # fmt: skip
    assert response.status_code == 400
    assert "never runs code from a model repository" in response.content.decode()
    assert nothing_stored(settings)


def test_an_outsider_cannot_see_or_train_someone_elses_config(api, outsider_api):
    created = api.post("/api/v1/architectures/", {"source": "hf_config",
                                                  "file": config_file(GPT2)}).json()  # fmt: skip
    assert outsider_api.get(f"/api/v1/architectures/{created['id']}/").status_code == 404
    job = outsider_api.post("/api/v1/jobs/", {
        "kind": "train", "architecture": created["id"],
        "parameters": {"dataset": "shakespeare", "accelerator": "none", "steps": 5},
    }, format="json")  # fmt: skip
    assert job.status_code == 400
