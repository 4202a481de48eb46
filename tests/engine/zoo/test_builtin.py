"""Built-in model families: shapes, parameter layout, example inputs."""

import torch
from torch import nn

from workers.zoo.build import build_model, example_input


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_flattens_and_classifies():
    model = build_model("mlp")
    assert model(example_input("mlp")).shape == (2, 10)
    small = build_model("mlp", {"in_features": 20, "hidden": [], "num_classes": 3})
    assert small(torch.randn(4, 20)).shape == (4, 3)
    assert _count(small) == 20 * 3 + 3


def test_cnn_is_nino_fm16():
    model = build_model("cnn")
    assert _count(model) == 14_378
    x = example_input("cnn")
    assert x.shape == (2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3


def test_cnn_other_sizes():
    model = build_model("cnn", {"in_channels": 3, "channels": [8], "image_size": 32})
    x = example_input("cnn", {"in_channels": 3, "channels": [8], "image_size": 32})
    assert x.shape == (2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_cnn_residual_forward():
    model = build_model("cnn_residual")
    assert model(example_input("cnn_residual")).shape == (2, 10)


def test_transformer_layout_and_forward():
    model = build_model("transformer")
    names = dict(model.named_modules())
    assert isinstance(names["blocks.0.attn.qkv"], nn.Linear)
    assert names["blocks.0.attn.qkv"].out_features == 3 * 24
    for name in ("blocks.2.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head"):
        assert isinstance(names[name], nn.Linear)
    assert isinstance(names["ln_f"], nn.LayerNorm)
    assert model.head.weight is not model.tok_emb.weight  # untied

    idx = example_input("transformer")
    assert idx.dtype == torch.long and idx.shape == (2, 128)
    assert int(idx.max()) < 96
    assert model(idx).shape == (2, 128, 96)
    assert model(idx[:, :5]).shape == (2, 5, 96)


def test_transformer_is_causal():
    model = build_model("transformer")
    idx = torch.randint(0, 96, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 96
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_models_are_built_in_eval_mode_on_the_requested_device():
    model = build_model("resnet18", {"num_classes": 7}, device="meta")
    assert not model.training
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.fc.out_features == 7
