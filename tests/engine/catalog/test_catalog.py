"""The model catalog: complete, correct parameter counts, strict argument validation."""

import json
import subprocess
import sys

import pytest
import torchvision

from tests.paths import ROOT
from workers.catalog.models import get_entry, input_shape, load_catalog, validate_args


def test_catalog_covers_every_torchvision_classification_model():
    expected = set(torchvision.models.list_models(module=torchvision.models))
    listed = {e["name"] for e in load_catalog() if e["family"] == "torchvision"}
    assert listed == expected
    assert len(expected) >= 80


def test_catalog_has_builtin_families_and_is_sorted():
    entries = load_catalog()
    builtin = {e["name"] for e in entries if e["family"] == "builtin"}
    assert {"mlp", "cnn", "cnn_residual", "transformer"} <= builtin
    keys = [(e["family"], e["name"]) for e in entries]
    assert keys == sorted(keys)


def test_entries_have_the_documented_fields():
    for entry in load_catalog():
        assert entry["task"] == "classification"
        assert entry["family"] in ("torchvision", "builtin")
        assert isinstance(entry["num_params"], int) and entry["num_params"] > 0
        assert entry["description"]
        assert all(isinstance(d, int) for d in entry["input_shape"])
        assert set(entry["default_args"]) <= set(entry["args"])
        for spec in entry["args"].values():
            assert spec["type"] in ("int", "float", "list[int]") and spec["help"]


@pytest.mark.parametrize(
    ("name", "num_params"),
    [
        ("resnet18", 11_689_512),
        ("cnn", 14_378),
        ("vit_b_16", 86_567_656),
        ("mobilenet_v2", 3_504_872),
        ("transformer", 29_400),
    ],
)
def test_known_parameter_counts(name, num_params):
    assert get_entry(name)["num_params"] == num_params


@pytest.mark.parametrize(
    "name", ["resnet18", "regnet_x_400mf", "swin_t", "mlp", "cnn", "cnn_residual", "transformer"]
)
def test_catalog_counts_match_built_models(name):
    from workers.zoo.build import build_model

    model = build_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == get_entry(name)["num_params"]


def test_special_input_shapes():
    assert get_entry("inception_v3")["input_shape"] == [3, 299, 299]
    assert get_entry("vit_h_14")["input_shape"] == [3, 224, 224]
    assert input_shape("mlp") == [1, 28, 28]
    assert input_shape("mlp", {"in_features": 20}) == [20]
    assert input_shape("cnn", {"in_channels": 3, "image_size": 32}) == [3, 32, 32]
    assert input_shape("transformer", {"context": 64}) == [64]
    assert get_entry("transformer")["input_dtype"] == "int64"


def test_validate_args_merges_defaults():
    assert validate_args("resnet18", {}) == {"num_classes": 1000}
    assert validate_args("resnet18", None) == {"num_classes": 1000}
    assert validate_args("vgg11", {"num_classes": 10, "dropout": 0})["dropout"] == 0.0
    args = validate_args("cnn", {"channels": (8, 8)})
    assert args == {"in_channels": 1, "channels": [8, 8], "num_classes": 10, "image_size": 28}


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("no_such_model", {}, "Unknown model"),
        ("resnet18", [1, 2], "must be an object"),
        ("resnet18", {"weights": "IMAGENET1K_V1"}, "Pretrained weights"),
        ("resnet18", {"dropout": 0.1}, "does not accept the argument 'dropout'"),
        ("resnet18", {"num_classes": "10"}, "must be an integer"),
        ("resnet18", {"num_classes": True}, "must be an integer"),
        ("resnet18", {"num_classes": 0}, "between 1 and"),
        ("vgg11", {"dropout": 1.5}, "between 0.0 and 1.0"),
        ("vgg11", {"dropout": "x"}, "must be a number"),
        ("cnn", {"channels": 16}, "list of integers"),
        ("cnn", {"channels": [16, "a"]}, "list of integers"),
        ("cnn", {"channels": []}, "between 1 and 16 entries"),
        ("cnn", {"kernel": 5}, "accepted: channels, image_size, in_channels, num_classes"),
        ("mlp", {"hidden": [0]}, "between 1 and"),
        ("transformer", {"d_model": 25}, "divisible by n_heads"),
    ],
)
def test_validate_args_rejects_bad_input(name, args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_args(name, args)


def test_web_facing_modules_do_not_import_torch():
    code = (
        "import sys, workers.catalog, workers.catalog.models, workers.catalog.hypernetworks, "
        "workers.errors, workers.safety.pt2, workers.safety.pickles, "
        "workers.safety.checkpoints, workers.safety.datasets; "
        "workers.catalog.models.load_catalog(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow
def test_catalog_json_is_up_to_date():
    from workers.catalog.models import CATALOG_PATH
    from workers.zoo.make_catalog import make_catalog

    on_disk = json.loads(CATALOG_PATH.read_text())
    assert make_catalog()["models"] == on_disk["models"]
