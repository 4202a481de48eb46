"""Hugging Face causal language models built from an uploaded ``config.json``.

``AutoModelForCausalLM.from_config`` builds the network from classes that ship inside
``transformers``: never ``trust_remote_code``, never a hub download (``HF_HUB_OFFLINE`` is set
before transformers is imported, and the config was checked by
``workers.safety.hf_config`` first, which refuses ``auto_map`` and unknown families).

The built model is the transformers class itself, with one change: ``forward(input_ids)``
returns the logits tensor rather than a ``ModelOutput``, because the training loop, the
evaluation and the graph tracers all expect a module that maps ``[batch, context]`` ids to
``[batch, context, vocabulary]`` logits. Keeping the class (a thin subclass, not a wrapper)
keeps transformers' parameter names, so a ``model.safetensors`` saved by transformers loads as
it is, and the parameter graph sees the transformers attention modules.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.errors import ModelError
from workers.safety.hf_config import HFConfigFacts, check_hf_config, read_hf_config
from workers.tensors import state_mismatch

# Character-level windows; a config allowing longer positions still trains on this many.
DEFAULT_CONTEXT = 128

_LOGITS_CLASSES: dict[type, type] = {}

#: Small named configs, CPU-sized (2 layers, d=64) for the Shakespeare text's 84 characters: the
#: ``gpt2`` and ``llama`` families of ``bench/nino_families.py`` and the ``llama`` trajectory
#: preset of ``workers.nino.trajectories`` both read them here, so the model NiNo is fine-tuned
#: on is the one the benchmark measures. Read them with :func:`small_config` (a copy).
SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2-2x64": {
        "model_type": "gpt2",
        "n_layer": 2,
        "n_embd": 64,
        "n_head": 4,
        "n_positions": 128,
        "vocab_size": 84,  # the Shakespeare text's characters
        "bos_token_id": 0,  # GPT-2's default 50256 lies outside a character vocabulary
        "eos_token_id": 0,
    },
    "llama-2x64": {  # grouped-query attention 4/2, SwiGLU
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 172,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "vocab_size": 84,
        "tie_word_embeddings": False,
    },
}


def small_config(name: str, **changes: Any) -> dict[str, Any]:
    """A copy of the named :data:`SMALL_CONFIGS` entry with ``changes`` applied."""
    return {**copy.deepcopy(SMALL_CONFIGS[name]), **changes}


def _offline() -> None:
    # Set before transformers is imported (it reads these once): nothing may reach the hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _logits_forward(self: Any, input_ids: torch.Tensor) -> torch.Tensor:
    # No key/value cache: training and tracing want one full pass, not generation state. An
    # all-ones mask means what no mask means (windows are never padded), and it spares
    # transformers a look for packed sequences that reads values (impossible on meta tensors).
    mask = torch.ones_like(input_ids)
    output = super(type(self), self).forward(
        input_ids=input_ids, attention_mask=mask, use_cache=False
    )
    return output.logits


def _logits_class(cls: type) -> type:
    """``cls`` with a ``forward`` returning logits; same name, one subclass per class."""
    if cls not in _LOGITS_CLASSES:
        _LOGITS_CLASSES[cls] = type(cls.__name__, (cls,), {"forward": _logits_forward})
    return _LOGITS_CLASSES[cls]


def load_config(path: str | Path) -> dict[str, Any]:
    """A checked ``config.json`` as a dict (the same checks as on upload)."""
    raw = Path(path).read_bytes()
    check_hf_config(raw)
    return read_hf_config(raw)


def build_hf_model(config: dict[str, Any], *, device: str | torch.device = "cpu") -> nn.Module:
    """The causal LM of a checked config, freshly initialised, on ``device`` ("meta" costs no
    memory). Raises ``ModelError`` when transformers refuses the config."""
    check_hf_config(_json_bytes(config))
    _offline()
    from transformers import AutoConfig, AutoModelForCausalLM

    values = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version")}
    # The eager attention is plain torch ops, which torch.export and fx follow everywhere.
    values["attn_implementation"] = "eager"
    try:
        hf_config = AutoConfig.for_model(config["model_type"], **values)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=False)
    except (ValueError, TypeError, KeyError) as error:
        raise ModelError(f"transformers refused the config: {error}") from None
    model.__class__ = _logits_class(type(model))
    return model.train()


def context_length(config: dict[str, Any], limit: int = DEFAULT_CONTEXT) -> int:
    """The training window for a config: its maximum positions, at most ``limit``."""
    facts = check_hf_config(_json_bytes(config))
    return min(limit, facts.max_positions)


def config_facts(config: dict[str, Any]) -> HFConfigFacts:
    """The checked facts of a config dict (family, width, depth, positions, parameter count);
    ``ModelError`` as on upload when the config is refused."""
    return check_hf_config(_json_bytes(config))


def load_hf_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a transformers ``model.safetensors`` state into ``model``; ``ModelError`` saying
    what does not fit. Every parameter must be there once: a tied head, which transformers
    saves under one name only, and buffers the file leaves out keep the built model's."""
    expected = model.state_dict()
    # named_parameters() names each shared tensor once; the other names are its aliases.
    required = [name for name, _ in model.named_parameters()]
    mismatch = state_mismatch(expected, state, required=required)
    if mismatch:
        raise ModelError(f"The weights do not fit this config: {mismatch}.")
    model.load_state_dict(state, strict=False)
    return model


def with_hf_weights(
    build: Callable[[], nn.Module], state: dict[str, torch.Tensor]
) -> Callable[[], nn.Module]:
    """``build`` followed by :func:`load_hf_weights` of ``state``."""
    return lambda: load_hf_weights(build(), state)


def vocabulary_size(model: nn.Module) -> int:
    """How many token ids the model reads (its config's ``vocab_size``)."""
    return int(model.config.vocab_size)


def _json_bytes(config: dict[str, Any]) -> bytes:
    import json

    return json.dumps(config).encode()
