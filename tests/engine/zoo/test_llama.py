"""The built-in Llama-style family: layout, forward pass, causality, argument checks."""

import pytest
import torch
from torch import nn

from workers.catalog.models import get_entry, input_shape, validate_args
from workers.zoo.build import build_model, example_input

ARGS = {
    "vocab_size": 50,
    "context": 16,
    "d_model": 24,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "mlp_hidden": 40,
}


def _expected_params(a: dict) -> int:
    d, head_dim = a["d_model"], a["d_model"] // a["n_heads"]
    kv = a["n_kv_heads"] * head_dim
    attn = 2 * d * d + 2 * d * kv
    mlp = 3 * d * a["mlp_hidden"]
    return 2 * a["vocab_size"] * d + a["n_layers"] * (attn + mlp + 2 * d) + d


def test_llama_has_llama_layout_and_counts_its_parameters():
    model = build_model("llama", ARGS)
    names = dict(model.named_modules())
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert isinstance(names[f"layers.0.self_attn.{name}"], nn.Linear)
        assert names[f"layers.0.self_attn.{name}"].bias is None
    assert names["layers.1.self_attn.k_proj"].out_features == 2 * 6  # two kv heads of dim 6
    for name in ("gate_proj", "up_proj", "down_proj"):
        assert isinstance(names[f"layers.1.mlp.{name}"], nn.Linear)
    assert isinstance(names["norm"], nn.RMSNorm)
    assert model.lm_head.weight is not model.embed_tokens.weight  # untied
    assert sum(p.numel() for p in model.parameters()) == _expected_params(ARGS)
    # RoPE tables are buffers that never reach a checkpoint.
    assert not any("cos" in k or "sin" in k for k in model.state_dict())


def test_llama_forward_gives_logits_for_every_position():
    model = build_model("llama", ARGS)
    idx = example_input("llama", ARGS)
    assert idx.dtype == torch.long and idx.shape == (2, 16)
    assert model(idx).shape == (2, 16, 50)
    assert model(idx[:, :3]).shape == (2, 3, 50)


def test_llama_is_causal_and_position_aware():
    torch.manual_seed(0)
    model = build_model("llama", ARGS)
    idx = torch.randint(0, 50, (1, 10))
    changed = idx.clone()
    changed[0, 7] = (idx[0, 7] + 1) % 50
    with torch.no_grad():
        a, b = model(idx), model(changed)
        assert torch.equal(a[:, :7], b[:, :7])
        assert not torch.allclose(a[:, 7:], b[:, 7:])
        # Without position information attention over (x, y) and (y, x) would give the last
        # position the same output; rotary embeddings make order matter.
        xy, yx = torch.tensor([[5, 9, 2]]), torch.tensor([[9, 5, 2]])
        assert not torch.allclose(model(xy)[0, -1], model(yx)[0, -1])


def test_llama_catalog_entry_and_argument_checks():
    entry = get_entry("llama")
    assert entry is not None and entry["family"] == "builtin"
    assert entry["num_params"] == _expected_params(entry["default_args"])
    assert input_shape("llama", {"context": 64}) == [64]
    with pytest.raises(ValueError, match="divisible by n_kv_heads"):
        validate_args("llama", {"n_heads": 4, "n_kv_heads": 3})
    with pytest.raises(ValueError, match="rotary"):
        validate_args("llama", {"d_model": 36, "n_heads": 8, "n_kv_heads": 2})


def test_llama_builds_on_meta_without_memory():
    model = build_model("llama", {**ARGS, "vocab_size": 128_256, "d_model": 384}, device="meta")
    assert all(p.is_meta for p in model.parameters())
