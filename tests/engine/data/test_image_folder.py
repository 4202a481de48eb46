"""Loading image-folder zips into ``ClassificationData`` (decoded with Pillow, in the plan's
shape), and torchvision data sets by name failing fast, with a sentence, on a worker offline."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.image_zips import class_folders, image_bytes, zip_bytes
from workers.data import load_builtin
from workers.data.datasets import DatasetUnavailable
from workers.data.image_folder import load_image_folder
from workers.errors import ModelError
from workers.safety.image_folder import plan_image_folder, read_header


def write(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "set.zip"
    path.write_bytes(zip_bytes(members))
    return path


def test_class_folders_load_as_scaled_images_with_labels_in_folder_name_order(tmp_path):
    path = write(tmp_path, class_folders({"zebra": 4, "ant": 11}, top="animals"))
    data = load_image_folder(path, name="animals")
    assert data.info.input_shape == (1, 8, 8) and data.num_classes == 2
    assert data.x_train.dtype == torch.float32
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    # "ant" sorts first: class 0. 10% of each class (at least one) is held out.
    assert data.y_train.tolist().count(0) == 10 and data.y_train.tolist().count(1) == 3
    assert sorted(data.y_test.tolist()) == [0, 1]
    # The pixels are the image's own: the first ant image is the pattern with value 10.
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(image_bytes(value=10))), dtype=np.float32)
    assert torch.allclose(data.x_train[0], torch.from_numpy(pixels)[None] / 255)


def test_the_split_is_the_same_as_the_plan_the_upload_page_showed(tmp_path):
    path = write(tmp_path, class_folders({"a": 25, "b": 7}))
    summary = plan_image_folder(path).summary()
    data = load_image_folder(path)
    assert len(data.y_train) == summary["samples"] and len(data.y_test) == summary["test_samples"]
    assert summary["class_counts"]["test"] == [2, 1]


def test_mixed_sizes_and_channels_are_converted_to_the_common_shape(tmp_path):
    members = class_folders({"a": 3, "b": 3}, kind="jpeg", mode="RGB", size=(12, 10))
    members["a/grey.png"] = image_bytes("png", (5, 5), "L")
    members["b/alpha.png"] = image_bytes("png", (30, 40), "RGBA")
    data = load_image_folder(write(tmp_path, members))
    assert data.info.input_shape == (3, 10, 12)
    assert data.x_train.shape[1:] == (3, 10, 12) and data.x_test.shape[1:] == (3, 10, 12)


def test_an_image_whose_body_is_broken_is_named(tmp_path):
    good = image_bytes("png", (8, 8))
    members = class_folders({"a": 3, "b": 3}) | {"b/broken.png": good[:40] + b"\0" * 40}
    with pytest.raises(ModelError, match="'b/broken.png' could not be decoded"):
        load_image_folder(write(tmp_path, members))


def test_headers_are_read_without_decoding():
    assert read_header(image_bytes("jpeg", (31, 17), "RGB"), "x").__dict__ == {
        "kind": "jpeg", "width": 31, "height": 17, "channels": 3, "alpha": False}  # fmt: skip
    assert read_header(image_bytes("png", (9, 4), "RGBA"), "x").alpha is True
    with pytest.raises(ModelError, match="not a PNG or JPEG"):
        read_header(b"BM" + b"\0" * 60, "x.bmp")


@pytest.mark.parametrize("name", ["cifar10", "mnist", "svhn"])
def test_a_torchvision_set_on_a_worker_without_internet_fails_fast_with_a_sentence(
    tmp_path, name
):
    # This machine has no internet: the real download path is what is tested here.
    started = time.monotonic()
    with pytest.raises(DatasetUnavailable) as caught:
        load_builtin(name, cache_dir=tmp_path, download=True)
    label = {"cifar10": "CIFAR10", "mnist": "MNIST", "svhn": "SVHN"}[name]
    assert str(caught.value).startswith(f"Could not download {label}: no network")
    assert "upload it as an image-folder zip instead" in str(caught.value)
    assert time.monotonic() - started < 20


def test_a_torchvision_set_with_downloads_off_says_so(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"downloads are off .*DATASET_DOWNLOADS=off"):
        load_builtin("cifar100", cache_dir=tmp_path, download=False)


def test_a_torchvision_set_in_the_cache_is_read_without_any_download(tmp_path):
    # MNIST's raw files, as torchvision leaves them after a download, built from random bytes.
    import struct

    raw = tmp_path / "torchvision" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = struct.pack(">IIII", 0x803, n, 28, 28) + bytes(range(256)) * (n * 784 // 256)
        images += b"\0" * (16 + n * 784 - len(images))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(images)
        labels = struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    data = load_builtin("mnist", cache_dir=tmp_path, download=False)
    assert data.info.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.y_train) == 30 and len(data.y_test) == 10
    assert float(data.x_train.max()) <= 1.0
