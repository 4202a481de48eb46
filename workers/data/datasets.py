"""In-memory data sets for training jobs: containers, deterministic batching, built-in sets.

Every data set here is small enough to live in memory as tensors, so batching is plain
indexing: no DataLoader, no worker processes, nothing that forks inside a Celery task.

Two containers cover both task kinds:

- ``ClassificationData``: inputs ``x`` [N, ...] (float32) and integer labels ``y`` [N].
- ``TextData``: a character vocabulary and the text as token ids, cut into
  [batch, context] windows whose targets are the next characters.

Both expose the same two methods that the training loop needs, ``train_batches(batch_size,
seed, epoch)`` and ``eval_batches(batch_size)``, and an ``info`` summary
(``DatasetInfo``) that jobs store and pages show.

Batches are shuffled by ``epoch_batches``, which re-seeds a ``torch.Generator`` with
``seed + epoch`` every epoch as NiNo's reference does, so two runs with the same seed (plain
Adam and NiNo, say) see exactly the same batches in the same order.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from workers.errors import ModelError

Task = Literal["classification", "char-lm"]
Batch = tuple[torch.Tensor, torch.Tensor]

# Where the Debian package dataset-fashion-mnist puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The published FM tasks (NiNo's FM/16) normalise with MNIST's statistics, not Fashion-MNIST's
# own (0.2860 / 0.3530); keep them so that published numbers can be reproduced.
FM_MEAN = 0.1307
FM_STD = 0.3081
FM_NUM_TRAIN = 55_000  # the last 5,000 training images are the validation split


class DatasetUnavailable(ModelError):
    """A built-in data set cannot be loaded on this worker (package missing, no download).

    A ``ModelError`` so that the job shows the message, which says what to install.
    """


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is, in plain values (JSON-ready via ``to_dict``).

    ``num_classes`` is the number of classes for classification and the vocabulary size for
    char-lm. Sizes count examples for classification and characters for text.
    """

    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int
    num_test: int
    num_val: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, with the input shape as a list."""
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def task_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss of both task kinds: mean cross-entropy over the batch's targets.

    Classification gives [batch, classes] logits for [batch] labels; char-lm gives
    [batch, T, vocab] logits for [batch, T] next characters, flattened over positions. It
    lives with the data because the targets' layout is the data's (``train_batches``); every
    training loop (the job's, trajectory collection) computes its loss with it.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once, for one epoch.

    The permutation comes from a ``torch.Generator`` seeded with ``seed + epoch``, so it
    depends only on these numbers (paired runs see identical batches, and a run can resume
    at any epoch). The last, partial batch is kept: 55,000 examples at batch 128 give 430
    batches, the last one of 88.

    The order is exactly that of ``DataLoader(dataset, batch_size, shuffle=True,
    generator=g)`` after ``g.manual_seed(seed + epoch)``, which is how NiNo's reference
    shuffles, so runs here see the batches of the published runs.
    """
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"need n > 0 and batch_size > 0, got n={n}, batch_size={batch_size}")
    generator = torch.Generator().manual_seed(seed + epoch)
    # A DataLoader iterator draws one int64 "base seed" from the generator before its sampler
    # draws the permutation; draw it too, or every batch differs from the reference's.
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return list(torch.randperm(n, generator=generator).split(batch_size))


@dataclass
class ClassificationData:
    """Inputs and integer class labels for training, testing and (optionally) validation.

    ``x_*`` are float32 tensors [N, *input_shape], ``y_*`` int64 tensors [N] in
    ``[0, num_classes)``. The training loop evaluates on the test split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def info(self) -> DatasetInfo:
        """Name, task, shapes and sizes."""
        return DatasetInfo(
            name=self.name,
            task="classification",
            input_shape=tuple(self.x_train.shape[1:]),
            num_classes=self.num_classes,
            num_train=len(self.y_train),
            num_test=len(self.y_test),
            num_val=0 if self.y_val is None else len(self.y_val),
        )

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        """One epoch of shuffled ``(x, y)`` training batches (see ``epoch_batches``)."""
        for idx in epoch_batches(len(self.y_train), batch_size, seed, epoch):
            yield self.x_train[idx], self.y_train[idx]

    def num_train_batches(self, batch_size: int) -> int:
        """How many batches one training epoch has (the last partial one included)."""
        return -(-len(self.y_train) // batch_size)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """The whole test split in order, in batches of ``batch_size``."""
        for start in range(0, len(self.y_test), batch_size):
            yield self.x_test[start : start + batch_size], self.y_test[start : start + batch_size]

    def example_batch(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` training inputs, for probing a model."""
        return self.x_train[:n]


@dataclass
class TextData:
    """A character-level corpus: vocabulary, training ids and held-out (validation) ids.

    ``vocab`` lists the characters in id order. Inputs are windows of ``context`` ids and the
    targets are the same windows shifted by one character. The training loop evaluates on
    the held-out ids (the last part of the text), which plays the role of the test set.
    """

    name: str
    vocab: str
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    context: int = 128
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {ch: i for i, ch in enumerate(self.vocab)}

    @property
    def info(self) -> DatasetInfo:
        """Name, task, window shape and vocabulary size; sizes count characters."""
        return DatasetInfo(
            name=self.name,
            task="char-lm",
            input_shape=(self.context,),
            num_classes=len(self.vocab),
            num_train=len(self.train_ids),
            num_test=len(self.val_ids),
            num_val=len(self.val_ids),
        )

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of ``text``; KeyError for a character outside the vocabulary."""
        return torch.tensor([self._index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of a 1-D sequence of token ids."""
        return "".join(self.vocab[int(i)] for i in ids)

    def windows(self, ids: torch.Tensor, starts: torch.Tensor) -> Batch:
        """Input windows ``ids[s : s + context]`` and their next-character targets."""
        offsets = starts[:, None] + torch.arange(self.context)
        return ids[offsets], ids[offsets + 1]

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        """One epoch of shuffled [batch, context] windows over the training text.

        Each epoch cuts the text into non-overlapping windows starting at a random offset in
        ``[0, context)``, so different epochs see different cuts; offset and order come from
        the ``seed + epoch`` generator, which keeps paired runs identical.
        """
        generator = torch.Generator().manual_seed(seed + epoch)
        offset = int(torch.randint(self.context, (1,), generator=generator))
        starts = offset + self.context * torch.arange(
            self._num_windows(len(self.train_ids) - offset)
        )
        for idx in epoch_batches(len(starts), batch_size, seed, epoch):
            yield self.windows(self.train_ids, starts[idx])

    def num_train_batches(self, batch_size: int) -> int:
        """Approximately how many batches one training epoch has (it varies by one window)."""
        return -(-self._num_windows(len(self.train_ids)) // batch_size)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """All non-overlapping windows of the held-out text, in order."""
        starts = self.context * torch.arange(self._num_windows(len(self.val_ids)))
        for chunk in starts.split(batch_size):
            yield self.windows(self.val_ids, chunk)

    def sample_batch(
        self, batch_size: int, generator: torch.Generator, split: str = "train"
    ) -> Batch:
        """``batch_size`` windows at random positions of the ``"train"`` or ``"val"`` text."""
        ids = self.train_ids if split == "train" else self.val_ids
        starts = torch.randint(len(ids) - self.context, (batch_size,), generator=generator)
        return self.windows(ids, starts)

    def example_batch(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` training windows, for probing a model."""
        return self.windows(self.train_ids, self.context * torch.arange(n))[0]

    def _num_windows(self, length: int) -> int:
        # A window needs context + 1 characters: context inputs and one more for the target.
        return max(0, (length - 1) // self.context)


TrainingData = ClassificationData | TextData


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``) into a numpy array.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension: 16 bytes for image files (n, rows, cols), 8 for label files (n).
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ValueError(f"{Path(path).name} is not a gzip-compressed IDX file") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{Path(path).name} is not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{Path(path).name}: header says {shape} ({expected} bytes) "
            f"but {len(raw) - header} bytes follow"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


_FM_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@lru_cache(maxsize=2)
def _fashion_mnist_arrays(root: str, download_dir: str | None) -> dict[str, np.ndarray]:
    # Cached: reading and gunzipping 30 MB takes about a second, and tests and benchmarks
    # load the set many times per process. The arrays are read-only views; callers copy.
    folder = Path(root)
    if all((folder / name).is_file() for name in _FM_FILES.values()):
        return {key: read_idx(folder / name) for key, name in _FM_FILES.items()}
    if download_dir is None:
        raise DatasetUnavailable(
            "Fashion-MNIST is not installed on this worker: install the Debian package "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)."
        )
    try:
        from torchvision.datasets import FashionMNIST

        train = FashionMNIST(download_dir, train=True, download=True)
        test = FashionMNIST(download_dir, train=False, download=True)
    except Exception as exc:  # no network, no torchvision, a broken mirror: all say the same
        raise DatasetUnavailable(
            "Fashion-MNIST is not installed on this worker and could not be downloaded: "
            "install the Debian package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist)."
        ) from exc
    return {
        "train_images": train.data.numpy(),
        "train_labels": train.targets.numpy(),
        "test_images": test.data.numpy(),
        "test_labels": test.targets.numpy(),
    }


def default_download_dir() -> Path:
    """Where built-in data sets may be downloaded: ``$WEIGHTSPACE_DATA_DIR`` or a user cache."""
    env = os.environ.get("WEIGHTSPACE_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "weightspace" / "datasets"


def fashion_mnist(
    root: str | Path | None = None,
    *,
    download: bool = True,
    download_dir: str | Path | None = None,
) -> ClassificationData:
    """Fashion-MNIST as NiNo's FM/16 task uses it: 55k train, 5k validation, 10k test.

    Reads the gzipped IDX files from ``root`` (default: where the Debian package
    ``dataset-fashion-mnist`` installs them). When they are absent and ``download`` is true,
    torchvision downloads the set into ``download_dir`` (default ``default_download_dir()``).
    Images are [N, 1, 28, 28] float32 scaled to [0, 1] then normalised with mean 0.1307 and
    std 0.3081; the training split is the first 55,000 images, validation the last 5,000.
    Raises ``DatasetUnavailable`` with what to install when neither source works.
    """
    folder = str(root or FASHION_MNIST_DIR)
    target = str(download_dir or default_download_dir()) if download else None
    arrays = _fashion_mnist_arrays(folder, target)

    def images(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0)
        return ((x - FM_MEAN) / FM_STD).unsqueeze(1)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    x_all, y_all = images(arrays["train_images"]), labels(arrays["train_labels"])
    return ClassificationData(
        name="fashion-mnist",
        x_train=x_all[:FM_NUM_TRAIN],
        y_train=y_all[:FM_NUM_TRAIN],
        x_val=x_all[FM_NUM_TRAIN:],
        y_val=y_all[FM_NUM_TRAIN:],
        x_test=images(arrays["test_images"]),
        y_test=labels(arrays["test_labels"]),
        num_classes=10,
    )


def mnist1d(seed: int = 42, num_samples: int = 5000) -> ClassificationData:
    """MNIST-1D (PyPI ``mnist1d``): 40-dimensional signals of 10 digit classes.

    Generated procedurally with ``make_dataset`` (``get_dataset`` would try to download); the
    default seed 42 and 5,000 samples give the published data set (4,000 train, 1,000 test).
    Inputs are [N, 40] float32, already centred and scaled by the generator.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DatasetUnavailable(
            "MNIST-1D needs the Python package mnist1d (pip install mnist1d)."
        ) from exc
    import random

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    # make_dataset seeds Python's and numpy's global generators; put them back afterwards so
    # that loading data does not change what other code draws.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return ClassificationData(
        name="mnist1d",
        x_train=torch.from_numpy(d["x"].astype(np.float32)),
        y_train=torch.from_numpy(d["y"].astype(np.int64)),
        x_test=torch.from_numpy(d["x_test"].astype(np.float32)),
        y_test=torch.from_numpy(d["y_test"].astype(np.int64)),
        num_classes=10,
    )


def digits(test_fraction: float = 0.2, seed: int = 0) -> ClassificationData:
    """scikit-learn's 1,797 8x8 digits, [N, 1, 8, 8] scaled to [0, 1]; needs scikit-learn.

    The test split is a fixed random ``test_fraction`` of the images (seeded by ``seed``).
    Raises ``DatasetUnavailable`` when scikit-learn is not installed (it is optional).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailable(
            "The digits data set needs scikit-learn (pip install scikit-learn)."
        ) from exc
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return ClassificationData(
        name="digits",
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        num_classes=10,
    )
