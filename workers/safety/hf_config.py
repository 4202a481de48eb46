"""Checks of an uploaded Hugging Face ``config.json`` for a causal language model, torch-free.

The web tier runs :func:`check_hf_config` on upload and the worker again before it builds the
model, so both refuse the same files. A config is data, but ``transformers`` would act on some
of its keys: ``auto_map`` points at Python code in a hub repository (``trust_remote_code``),
``quantization_config`` pulls in other libraries. Those are refused, and only the model types
of :data:`MODEL_TYPES` are accepted — decoder-only families whose classes ship inside
``transformers`` and whose parameter count :func:`estimate_hf_params` knows exactly (the tests
compare it with ``sum(p.numel())`` of built models), so ``MAX_MODEL_PARAMS`` holds before
anything is built.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from workers.errors import ModelError

MAX_CONFIG_BYTES = 64 * 1024

# model_type -> what the page says. Each is built by AutoModelForCausalLM from classes that ship
# inside transformers; nothing is fetched or executed from elsewhere.
MODEL_TYPES: dict[str, str] = {
    "gpt2": "GPT-2",
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "gemma": "Gemma",
    "phi": "Phi (1, 1.5, 2)",
    "phi3": "Phi-3",
}

# Keys that make transformers import or download code, or need other libraries.
FORBIDDEN_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines", "quantization_config")

# The defaults transformers uses for a key a config.json leaves out (those the estimate reads).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
             "n_head": 12, "n_inner": None, "tie_word_embeddings": True},
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32,
              "max_position_embeddings": 2048, "tie_word_embeddings": False,
              "attention_bias": False, "mlp_bias": False},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                "max_position_embeddings": 131072, "tie_word_embeddings": False},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
              "num_hidden_layers": 32, "num_attention_heads": 32,
              "max_position_embeddings": 32768, "tie_word_embeddings": False},
    "qwen3": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
              "num_hidden_layers": 32, "num_attention_heads": 32,
              "max_position_embeddings": 32768, "tie_word_embeddings": False,
              "attention_bias": False, "head_dim": 128},
    "gemma": {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
              "num_hidden_layers": 28, "num_attention_heads": 16, "head_dim": 256,
              "max_position_embeddings": 8192, "tie_word_embeddings": True,
              "attention_bias": False},
    "phi": {"vocab_size": 51200, "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 24, "num_attention_heads": 32,
            "max_position_embeddings": 2048, "tie_word_embeddings": False,
            "qk_layernorm": False},
    "phi3": {"vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
             "num_hidden_layers": 32, "num_attention_heads": 32,
             "max_position_embeddings": 4096, "tie_word_embeddings": False},
}  # fmt: skip

# Sane bounds: beyond them a config is a typo or an attack on memory, whatever its count.
MAX_VOCAB = 1_000_000
MAX_WIDTH = 65_536
MAX_LAYERS = 512
MAX_POSITIONS = 1_048_576


@dataclass(frozen=True)
class HFConfigFacts:
    """What the checks read from a config: its family and sizes, and the parameter count of the
    model ``from_config`` builds (tied embeddings counted once)."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    max_positions: int
    tied_embeddings: bool
    num_params: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_hf_config(raw: bytes) -> dict[str, Any]:
    """The JSON object of a ``config.json``; ``ModelError`` when it is not one."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelError(
            f"The config is {len(raw):,} bytes; a Hugging Face config.json is a few kB "
            f"(limit {MAX_CONFIG_BYTES:,})."
        )
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"The config is not valid UTF-8 JSON: {error}") from None
    if not isinstance(config, dict):
        raise ModelError("The config must be a JSON object, as config.json files are.")
    return config


def check_hf_config(raw: bytes, *, max_params: int = 0) -> HFConfigFacts:
    """Check a ``config.json``'s bytes; return its facts or raise ``ModelError`` saying why not.

    Refuses: anything but a small JSON object, a ``model_type`` outside :data:`MODEL_TYPES`,
    the keys of :data:`FORBIDDEN_KEYS`, sizes that are not positive integers within the bounds
    above, heads that do not divide the width, and a model above ``max_params`` (0: no limit).
    """
    config = read_hf_config(raw)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        known = ", ".join(MODEL_TYPES)
        raise ModelError(
            f"model_type {model_type!r} is not a causal-LM family this server builds; "
            f"known: {known}." if model_type else
            f"The config has no model_type; causal-LM families this server builds: {known}."
        )  # fmt: skip
    forbidden = [key for key in FORBIDDEN_KEYS if key in config]
    if forbidden:
        raise ModelError(
            f"The config has {', '.join(forbidden)}: this server never runs code from a "
            "model repository nor loads quantisation libraries; remove the key(s)."
        )
    architectures = config.get("architectures")
    if architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures)
    ):
        raise ModelError("'architectures' must be a list of class names.")
    value = _Reader(model_type, config)
    facts = _facts(model_type, value)
    if max_params and facts.num_params > max_params:
        raise ModelError(
            f"This {MODEL_TYPES[model_type]} config describes about {facts.num_params:,} "
            f"parameters; this server accepts up to {max_params:,} (MAX_MODEL_PARAMS)."
        )
    return facts


def estimate_hf_params(config: dict[str, Any]) -> int:
    """The parameter count of ``AutoModelForCausalLM.from_config`` for a checked config."""
    model_type = config["model_type"]
    return _facts(model_type, _Reader(model_type, config)).num_params


class _Reader:
    """Reads a config's sizes and flags, with transformers' defaults, checking each."""

    def __init__(self, model_type: str, config: dict[str, Any]) -> None:
        self.config, self.defaults = config, _DEFAULTS[model_type]

    def __call__(self, key: str, *, upper: int = MAX_WIDTH, optional: bool = False) -> Any:
        raw = self.config.get(key, self.defaults.get(key))
        if raw is None and optional:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= upper:
            raise ModelError(f"'{key}' must be an integer from 1 to {upper:,}; it is {raw!r}.")
        return raw

    def flag(self, key: str) -> bool:
        raw = self.config.get(key, self.defaults.get(key, False))
        if not isinstance(raw, bool):
            raise ModelError(f"'{key}' must be true or false; it is {raw!r}.")
        return raw


def _facts(model_type: str, value: _Reader) -> HFConfigFacts:
    flag = value.flag
    if model_type == "gpt2":
        v, d = value("vocab_size", upper=MAX_VOCAB), value("n_embd")
        layers, heads = value("n_layer", upper=MAX_LAYERS), value("n_head")
        positions = value("n_positions", upper=MAX_POSITIONS)
        inner = value("n_inner", upper=4 * MAX_WIDTH, optional=True) or 4 * d
        _divides(heads, d, "n_head", "n_embd")
        tied = flag("tie_word_embeddings")
        block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * inner + inner)
        block += inner * d + d
        count = v * d + positions * d + layers * block + 2 * d + (0 if tied else v * d)
        return HFConfigFacts(model_type, v, d, layers, heads, positions, tied, count)

    v, d = value("vocab_size", upper=MAX_VOCAB), value("hidden_size")
    inter = value("intermediate_size", upper=4 * MAX_WIDTH)
    layers, heads = value("num_hidden_layers", upper=MAX_LAYERS), value("num_attention_heads")
    kv = value("num_key_value_heads", optional=True) or heads
    positions = value("max_position_embeddings", upper=MAX_POSITIONS)
    head_dim = value("head_dim", optional=True)
    if head_dim is None:
        _divides(heads, d, "num_attention_heads", "hidden_size")
        head_dim = d // heads
    if heads % kv:
        raise ModelError(
            f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv})."
        )
    tied = flag("tie_word_embeddings")
    q, k = heads * head_dim, kv * head_dim
    head = 0 if tied else v * d
    if model_type == "phi":
        # LayerNorms with bias, biased q/k/v/dense and fc1/fc2, a biased head (parallel block).
        attention = d * q + q + 2 * (d * k + k) + q * d + d
        if flag("qk_layernorm"):
            attention += 2 * 2 * head_dim
        block = 2 * d + attention + (d * inter + inter) + (inter * d + d)
        count = v * d + layers * block + 2 * d + (0 if tied else v * d + v)
        return HFConfigFacts(model_type, v, d, layers, heads, positions, tied, count)
    # RMSNorm families: two norms per block, q/k/v/o projections, a gated (SwiGLU) MLP.
    attention = d * q + 2 * d * k + q * d
    mlp = 3 * d * inter
    if model_type in ("llama", "qwen3", "gemma") and flag("attention_bias"):
        attention += q + 2 * k + d
    if model_type == "qwen2":
        attention += q + 2 * k  # biased q/k/v, unbiased o
    if model_type == "qwen3":
        attention += 2 * head_dim  # q_norm and k_norm over each head
    if model_type == "llama" and flag("mlp_bias"):
        mlp += 2 * inter + d
    block = 2 * d + attention + mlp
    count = v * d + layers * block + d + head
    return HFConfigFacts(model_type, v, d, layers, heads, positions, tied, count)


def _divides(heads: int, width: int, heads_key: str, width_key: str) -> None:
    if width % heads:
        raise ModelError(f"{width_key} ({width}) must be a multiple of {heads_key} ({heads}).")
