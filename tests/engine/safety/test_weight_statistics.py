"""The checkpoint scan reads each tensor's statistics from the file, torch-free, and they are
the ones torch computes (bfloat16 and NaN values included)."""

from __future__ import annotations

import io
import math

import torch

from tests.conftest import safetensors_bytes
from workers.safety.checkpoints import scan_safetensors


def _scan(tensors: dict) -> dict:
    content = safetensors_bytes(tensors)
    facts = scan_safetensors(io.BytesIO(content), len(content))
    return {t["name"]: t.get("stats") for t in facts.tensors}


def test_a_scanned_checkpoint_carries_mean_std_min_and_max_of_every_float_tensor():
    torch.manual_seed(0)
    weight = torch.randn(64, 32) * 0.05 + 0.01
    stats = _scan({"w": weight, "b": torch.arange(5, dtype=torch.int64)})
    w = stats["w"]
    assert math.isclose(w["mean"], weight.double().mean().item(), rel_tol=1e-4)
    assert math.isclose(w["std"], weight.double().std(unbiased=False).item(), rel_tol=1e-4)
    assert w["min"] == float(f"{weight.min().item():.6g}")
    assert w["max"] == float(f"{weight.max().item():.6g}")
    b = stats["b"]
    assert (b["mean"], b["min"], b["max"]) == (2.0, 0.0, 4.0)
    assert math.isclose(b["std"], math.sqrt(2.0), rel_tol=1e-5)


def test_bfloat16_values_are_widened_and_nan_values_are_counted_apart():
    values = torch.tensor([1.5, -2.0, float("nan"), 0.25], dtype=torch.bfloat16)
    stats = _scan({"x": values})["x"]
    assert stats["nonfinite"] == 1
    assert (stats["min"], stats["max"]) == (-2.0, 1.5)
    assert math.isclose(stats["mean"], (1.5 - 2.0 + 0.25) / 3, rel_tol=1e-6)


def test_a_tensor_larger_than_one_read_is_summed_across_chunks():
    big = torch.ones(3_000_000)  # 12 MB of float32: three reads of 4 MB
    big[-1] = 7.0
    stats = _scan({"big": big})["big"]
    assert stats["max"] == 7.0 and stats["min"] == 1.0
    # Six significant digits are stored.
    assert math.isclose(stats["mean"], (3_000_000 - 1 + 7) / 3_000_000, rel_tol=1e-5)
