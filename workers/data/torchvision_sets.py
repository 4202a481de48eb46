"""torchvision data sets by name (MNIST, KMNIST, CIFAR-10/100, SVHN), downloaded on first use.

Each loader reads the set from ``cache_dir`` when an earlier job left it there, else (when
``download`` is true) has torchvision download it there. Before downloading, one TCP connection
to the set's server is tried with a short timeout, so a worker without internet fails in
seconds with a sentence that says what to do instead, rather than hanging in a download; the
download itself runs with a socket timeout for the same reason. Images become float32
[N, C, H, W] scaled to [0, 1] (no normalisation: the same convention as uploaded images).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from workers.data.datasets import ClassificationData, DatasetUnavailable, default_download_dir

CONNECT_TIMEOUT = 5.0  # seconds to reach the set's server before calling the worker offline
DOWNLOAD_TIMEOUT = 60.0  # seconds a stalled download socket may wait


def _source_url(cls: Any) -> str:
    # Where torchvision downloads the set from: a list of mirrors, one URL, or one per split.
    if getattr(cls, "mirrors", None):
        return cls.mirrors[0]
    if getattr(cls, "url", None):
        return cls.url
    return next(iter(cls.split_list.values()))[0]


def reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout`` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch(
    label: str, make: Callable[..., Any], cls: Any, cache_dir: Path, download: bool
) -> Any:
    # The set from the cache, else downloaded into it; DatasetUnavailable with the way out.
    instead = "upload it as an image-folder zip instead"
    try:
        return make(str(cache_dir), download=False)
    except RuntimeError:
        pass  # not in the cache (torchvision: "Dataset not found or corrupted")
    if not download:
        raise DatasetUnavailable(
            f"Could not download {label}: downloads are off on this deployment "
            f"(DATASET_DOWNLOADS=off) and it is not in the worker's cache; {instead}."
        )
    url = _source_url(cls)
    if not reachable(url):
        raise DatasetUnavailable(
            f"Could not download {label}: no network ({urlparse(url).hostname} cannot be "
            f"reached from the worker); {instead}."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        return make(str(cache_dir), download=True)
    except Exception as error:  # noqa: BLE001 - URLError, timeouts, checksum errors …
        raise DatasetUnavailable(
            f"Could not download {label} ({type(error).__name__}); {instead}."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _images(data: Any, channels_last: bool) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    if x.ndim == 3:  # grey [N, H, W]
        x = x.unsqueeze(1)
    elif channels_last:  # [N, H, W, C]
        x = x.permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous()


def _load(
    name: str, label: str, cls_name: str, classes: int, cache_dir: Path | None, download: bool,
    *, split_kw: str = "train", channels_last: bool = False, labels_attr: str = "targets",
) -> ClassificationData:  # fmt: skip
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = Path(cache_dir or default_download_dir()) / "torchvision"
    if split_kw == "split":  # SVHN names its splits
        def make(split: str) -> Callable[..., Any]:
            return lambda root, download: cls(root, split=split, download=download)
        train_split, test_split = make("train"), make("test")
    else:
        def make_flag(train: bool) -> Callable[..., Any]:
            return lambda root, download: cls(root, train=train, download=download)
        train_split, test_split = make_flag(True), make_flag(False)
    train = _fetch(label, train_split, cls, root, download)
    test = _fetch(label, test_split, cls, root, download)

    def labels(ds: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(getattr(ds, labels_attr)), dtype=torch.int64)

    return ClassificationData(
        name=name,
        x_train=_images(train.data, channels_last),
        y_train=labels(train),
        x_test=_images(test.data, channels_last),
        y_test=labels(test),
        num_classes=classes,
    )


def mnist(cache_dir: Path | None = None, download: bool = True) -> ClassificationData:
    """MNIST digits: 60k/10k [1, 28, 28]."""
    return _load("mnist", "MNIST", "MNIST", 10, cache_dir, download)


def kmnist(cache_dir: Path | None = None, download: bool = True) -> ClassificationData:
    """Kuzushiji-MNIST characters: 60k/10k [1, 28, 28]."""
    return _load("kmnist", "KMNIST", "KMNIST", 10, cache_dir, download)


def cifar10(cache_dir: Path | None = None, download: bool = True) -> ClassificationData:
    """CIFAR-10: 50k/10k [3, 32, 32]."""
    return _load("cifar10", "CIFAR10", "CIFAR10", 10, cache_dir, download, channels_last=True)


def cifar100(cache_dir: Path | None = None, download: bool = True) -> ClassificationData:
    """CIFAR-100 (fine labels): 50k/10k [3, 32, 32]."""
    return _load("cifar100", "CIFAR100", "CIFAR100", 100, cache_dir, download, channels_last=True)


def svhn(cache_dir: Path | None = None, download: bool = True) -> ClassificationData:
    """SVHN house-number digits: 73k/26k [3, 32, 32] (needs scipy to read its .mat files)."""
    return _load("svhn", "SVHN", "SVHN", 10, cache_dir, download, split_kw="split",
                 labels_attr="labels")  # fmt: skip
