"""Model sizes are counted from the arguments, without building anything: every formula equals
the real ``sum(p.numel())`` of the built model, and a model above the server's limit is refused
with a sentence naming both numbers."""

from __future__ import annotations

import sys

import pytest

from workers.catalog.estimates import TORCHVISION_PARAMS_PER_CLASS, memory_refusal
from workers.catalog.models import get_entry, load_catalog, param_count, validate_args

# Several argument sets per built-in family: defaults, edge cases (no hidden layer, no blocks),
# and uneven widths, heads and grouped-query attention.
# fmt: off
BUILTIN_ARGS = [
    ("mlp", {}),
    ("mlp", {"in_features": 40, "hidden": [], "num_classes": 3}),
    ("mlp", {"in_features": 7, "hidden": [13, 1, 29], "num_classes": 100}),
    ("cnn", {}),
    ("cnn", {"in_channels": 3, "channels": [5], "num_classes": 2, "image_size": 9}),
    ("cnn", {"in_channels": 2, "channels": [8, 3, 17, 4], "num_classes": 11}),
    ("cnn_residual", {}),
    ("cnn_residual", {"in_channels": 3, "width": 7, "num_blocks": 0, "num_classes": 4}),
    ("cnn_residual", {"width": 12, "num_blocks": 5, "num_classes": 100}),
    ("transformer", {}),
    ("transformer", {"vocab_size": 50, "context": 7, "d_model": 12, "n_layers": 0, "n_heads": 3}),
    ("transformer", {"vocab_size": 257, "context": 33, "d_model": 30, "n_layers": 4,
                     "n_heads": 5, "mlp_ratio": 3}),
    ("llama", {}),
    ("llama", {"vocab_size": 10, "context": 5, "d_model": 24, "n_layers": 0, "n_heads": 6,
               "n_kv_heads": 3, "mlp_hidden": 7}),
    ("llama", {"vocab_size": 300, "context": 40, "d_model": 48, "n_layers": 3, "n_heads": 8,
               "n_kv_heads": 1, "mlp_hidden": 100}),
]
# fmt: on

HUGE_MLP = {"in_features": 65536, "hidden": [65536] * 16}


def real_count(name: str, args: dict) -> int:
    from workers.zoo.build import build_model

    model = build_model(name, args, device="meta")
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "args"), BUILTIN_ARGS)
def test_the_estimate_of_a_built_in_family_is_its_real_parameter_count(name, args):
    assert param_count(name, args) == real_count(name, args)


@pytest.mark.parametrize("num_classes", [1, 10, 1000, 12_345])
def test_the_estimate_of_every_torchvision_entry_follows_its_head(num_classes):
    entries = [e for e in load_catalog() if e["family"] == "torchvision"]
    assert {e["name"] for e in entries} == set(TORCHVISION_PARAMS_PER_CLASS)
    for entry in entries:
        args = {"num_classes": num_classes}
        assert param_count(entry["name"], args) == real_count(entry["name"], args), entry["name"]


def test_the_catalog_counts_without_importing_torch():
    # The web tier calls this; a fresh interpreter shows no torch is needed.
    import subprocess

    code = (
        "import sys; from workers.catalog.models import param_count; "
        "param_count('llama', {}); param_count('resnet18', {'num_classes': 3}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_model_above_the_limit_is_refused_with_the_estimate_and_the_limit():
    with pytest.raises(ValueError) as caught:
        validate_args("mlp", HUGE_MLP, max_params=2_000_000_000)
    assert str(caught.value) == (
        "mlp with these arguments has about 68,721,180,682 parameters; this server accepts up "
        "to 2,000,000,000 (MAX_MODEL_PARAMS)."
    )


def test_without_a_limit_or_below_it_the_arguments_are_accepted():
    assert validate_args("mlp", HUGE_MLP)["hidden"] == [65536] * 16
    assert validate_args("resnet18", {"num_classes": 10}, max_params=12_000_000)
    count = param_count("vit_h_14", {})
    assert count == get_entry("vit_h_14")["num_params"]
    assert validate_args("vit_h_14", {}, max_params=count) == {"num_classes": 1000}
    with pytest.raises(ValueError, match="about 632,045,800 parameters"):
        validate_args("vit_h_14", {}, max_params=count - 1)


def test_a_job_above_the_memory_limit_gets_a_sentence_naming_both_sizes():
    assert memory_refusal("train job", 1_000, 40, 40_000) is None
    assert memory_refusal("train job", 10**12, 40, 0) is None  # 0: no limit
    assert memory_refusal("train job", 100_000_000, 40, 2 * 10**9) == (
        "This train job needs about 4.0 GB of memory for a model with 100,000,000 parameters; "
        "a job on this server may use up to 2.0 GB (JOB_MEMORY_LIMIT)."
    )
