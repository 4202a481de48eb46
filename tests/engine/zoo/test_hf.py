"""Hugging Face causal LMs from a config.json: the torch-free checks and the builder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workers.errors import ModelError
from workers.safety.hf_config import MODEL_TYPES, check_hf_config, estimate_hf_params
from workers.zoo.hf import build_hf_model, context_length, load_hf_weights

ROOT = Path(__file__).resolve().parents[3]

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256,
        "n_positions": 64}  # fmt: skip
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32,
         "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 256, "max_position_embeddings": 128}  # fmt: skip

# One small config per family and the options that change the count.
SMALL = {
    "gpt2": [GPT2, {**GPT2, "tie_word_embeddings": False, "n_inner": 48}],
    "llama": [LLAMA, {**LLAMA, "attention_bias": True, "mlp_bias": True,
                      "tie_word_embeddings": True, "head_dim": 16}],
    "mistral": [{**LLAMA, "model_type": "mistral"}],
    "qwen2": [{**LLAMA, "model_type": "qwen2"}, {**LLAMA, "model_type": "qwen2",
                                                  "tie_word_embeddings": True}],
    "qwen3": [{**LLAMA, "model_type": "qwen3", "head_dim": 8},
              {**LLAMA, "model_type": "qwen3", "head_dim": 16, "attention_bias": True}],
    "gemma": [{**LLAMA, "model_type": "gemma", "head_dim": 8}],
    "phi": [{**LLAMA, "model_type": "phi"}, {**LLAMA, "model_type": "phi", "qk_layernorm": True}],
    "phi3": [{**LLAMA, "model_type": "phi3", "pad_token_id": 0, "bos_token_id": 1,
              "eos_token_id": 2}],
}  # fmt: skip


def raw(config: dict) -> bytes:
    return json.dumps(config).encode()


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_accepted_family_has_a_small_config_here():
    assert set(SMALL) == set(MODEL_TYPES)


@pytest.mark.parametrize(
    "config", [c for configs in SMALL.values() for c in configs],
    ids=lambda c: f"{c['model_type']}-{len(c)}",
)  # fmt: skip
def test_the_parameter_estimate_equals_the_built_models_count(config):
    model = build_hf_model(config, device="meta")
    assert estimate_hf_params(config) == count(model)


def test_a_config_with_remote_code_is_refused_naming_the_key():
    with pytest.raises(ModelError, match="auto_map.*never runs code"):
        check_hf_config(raw({**LLAMA, "auto_map": {"AutoModelForCausalLM": "x.Model"}}))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**LLAMA, "model_type": "bert"}, "'bert' is not a causal-LM family"),
        ({"hidden_size": 32}, "no model_type"),
        ({**LLAMA, "hidden_size": 33}, r"hidden_size \(33\) must be a multiple"),
        ({**LLAMA, "num_key_value_heads": 3}, "multiple of num_key_value_heads"),
        ({**LLAMA, "vocab_size": 0}, "'vocab_size' must be an integer from 1"),
        ({**LLAMA, "num_hidden_layers": "2"}, "'num_hidden_layers' must be an integer"),
        ({**LLAMA, "tie_word_embeddings": "yes"}, "must be true or false"),
        ({**LLAMA, "architectures": "LlamaForCausalLM"}, "list of class names"),
    ],
)
def test_a_config_that_does_not_describe_a_sane_causal_lm_is_refused_with_a_sentence(
    config, message
):
    with pytest.raises(ModelError, match=message):
        check_hf_config(raw(config))


def test_not_json_and_too_big_configs_are_refused():
    with pytest.raises(ModelError, match="not valid UTF-8 JSON"):
        check_hf_config(b"{model_type: llama")
    with pytest.raises(ModelError, match="must be a JSON object"):
        check_hf_config(b"[1, 2]")
    with pytest.raises(ModelError, match="a few kB"):
        check_hf_config(raw({**LLAMA, "padding": "x" * 70_000}))


def test_a_config_above_the_servers_parameter_limit_is_refused_before_anything_is_built():
    seven_b = {"model_type": "llama"}  # transformers' defaults: Llama-2 7B
    facts = check_hf_config(raw(seven_b))
    assert 6.7e9 < facts.num_params < 6.8e9
    with pytest.raises(ModelError, match=r"about 6,738,415,616 parameters.*MAX_MODEL_PARAMS"):
        check_hf_config(raw(seven_b), max_params=2_000_000_000)


def test_the_built_model_maps_ids_to_logits_and_keeps_transformers_names():
    model = build_hf_model(GPT2)
    logits = model(torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, 256)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert "transformer.h.0.attn.c_attn.weight" in dict(model.named_parameters())


def test_transformers_weights_load_even_without_the_tied_head():
    source = build_hf_model(GPT2)
    state = {k: v for k, v in source.state_dict().items() if k != "lm_head.weight"}
    target = load_hf_weights(build_hf_model(GPT2), state)
    x = torch.randint(0, 256, (1, 8))
    assert torch.equal(target.eval()(x), source.eval()(x))
    with pytest.raises(ModelError, match="missing transformer.wte.weight"):
        no_embedding = {k: v for k, v in state.items() if k != "transformer.wte.weight"}
        load_hf_weights(build_hf_model(GPT2), no_embedding)
    with pytest.raises(ModelError, match="wrong shape for transformer.wpe.weight"):
        load_hf_weights(build_hf_model(GPT2), {**state, "transformer.wpe.weight": torch.zeros(3)})


def test_the_training_window_is_the_configs_positions_at_most_128():
    assert context_length(GPT2) == 64
    assert context_length(LLAMA) == 128


def test_building_never_reaches_the_hub():
    # A fresh interpreter with no network route and an empty cache: building must not try.
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network use')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from workers.zoo.hf import build_hf_model\n"
        f"m = build_hf_model({LLAMA!r})\n"
        "import os; print(os.environ['HF_HUB_OFFLINE'], type(m).__name__)\n"
    )
    env = {**os.environ, "HF_HOME": "/nonexistent-hf-home", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "LlamaForCausalLM"]
