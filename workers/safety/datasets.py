"""Checks of uploaded data sets that need numpy but not torch, shared by the web tier (on upload)
and the worker (before training), so both refuse exactly the same files.

Every problem raises ``workers.errors.ModelError`` with a message for the person who uploaded
the file. ``.npz`` files are opened with ``allow_pickle=False``; the members' declared sizes
are held against an inflation budget and their array headers read before the data, and each
member is streamed once within its declared size (CRC checked) before numpy loads it, so object
arrays and huge (or zip-bomb) arrays are refused without loading.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from workers.errors import ModelError
from workers.safety.pickles import MAX_INFLATED, check_declared_sizes, open_zip, verify_members

MIN_SAMPLES = 100
MIN_TEXT_CHARS = 5_000
MAX_VOCAB = 1_024
MAX_ARRAY_BYTES = 2 * 1024**3  # per array, once decompressed
MAX_TEXT_BYTES = 200 * 1024**2


def validate_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int | None = None,
    min_samples: int = MIN_SAMPLES,
    split: str = "training",
) -> int:
    """Check classification arrays ``x`` [N, ...] and ``y`` [N]; return the number of classes.

    Refuses: x without a sample axis or not numeric, NaN or infinite inputs, y that is not a
    1-D array of integers, different lengths, fewer than ``min_samples`` samples, labels
    outside ``[0, num_classes)`` (``num_classes`` defaults to the largest label + 1), and
    fewer than two distinct classes. ``split`` names the split in messages.
    """
    if x.ndim < 2:
        raise ModelError(
            f"The {split} inputs x must have a sample axis and at least one feature axis "
            f"(shape [samples, ...]); got shape {list(x.shape)}."
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ModelError(f"The {split} inputs x must be numbers; got dtype {x.dtype}.")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ModelError(
            f"The {split} labels y must be a 1-D array of integer class ids; got shape "
            f"{list(y.shape)} with dtype {y.dtype}."
        )
    if len(x) != len(y):
        raise ModelError(
            f"The {split} split has {len(x)} inputs but {len(y)} labels; "
            "x and y must have the same length."
        )
    if len(y) < min_samples:
        raise ModelError(
            f"The {split} split has only {len(y)} samples; at least {min_samples} are needed."
        )
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise ModelError(f"The {split} inputs x contain {bad} NaN or infinite values.")
    low, high = int(y.min()), int(y.max())
    classes = high + 1 if num_classes is None else num_classes
    if low < 0 or high >= classes:
        raise ModelError(
            f"The {split} labels must lie in [0, {classes}); found labels from {low} to {high}."
        )
    distinct = len(np.unique(y))
    if distinct < 2:
        raise ModelError(
            f"The {split} labels contain {distinct} distinct class; at least 2 are needed."
        )
    return classes


def validate_text(
    text: str,
    *,
    min_chars: int = MIN_TEXT_CHARS,
    max_vocab: int = MAX_VOCAB,
    context: int = 128,
) -> None:
    """Check a text for character-level training: long enough, text-like, small vocabulary.

    It must have at least ``min_chars`` characters and enough for a few dozen training
    windows of ``context`` characters, no NUL characters (a sign of a binary file), and at
    most ``max_vocab`` distinct characters.
    """
    needed = max(min_chars, 20 * (context + 1))
    if len(text) < needed:
        raise ModelError(
            f"The text has only {len(text):,} characters; at least {needed:,} are needed."
        )
    if "\x00" in text:
        raise ModelError("The file contains NUL characters; it looks binary, not plain text.")
    vocab = len(set(text))
    if vocab > max_vocab:
        raise ModelError(
            f"The text uses {vocab:,} distinct characters; at most {max_vocab:,} are allowed "
            "for a character-level model."
        )


def npz_headers(
    path: Path, max_bytes: int, max_inflated: int = MAX_INFLATED
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    # Refuse members whose declared sizes inflate past the budget, then read each member's
    # .npy header (a few dozen bytes) to learn shape and dtype without decompressing the data,
    # so object arrays and oversized arrays are refused up front; last, stream every member
    # once (within its declared size, CRC checked), so a member that lies about its size is
    # stopped before numpy reads it.
    where = "The .npz archive"
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with open_zip(str(path), where) as archive:
        check_declared_sizes(archive, where, max_inflated)
        for info in archive.infolist():
            member = info.filename
            if not member.endswith(".npy"):
                continue
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                header_bytes = f.tell()
            name = member[: -len(".npy")]
            if dtype.hasobject:
                raise ModelError(
                    f"Array {name!r} holds Python objects; only numeric arrays are accepted."
                )
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if nbytes > max_bytes:
                raise ModelError(
                    f"Array {name!r} would take {nbytes / 1024**2:,.0f} MB in memory; "
                    f"the limit is {max_bytes / 1024**2:,.0f} MB."
                )
            if header_bytes + nbytes != info.file_size:
                raise ModelError(
                    f"Array {name!r} declares {nbytes:,} bytes of data but its archive member "
                    f"holds {max(info.file_size - header_bytes, 0):,}; the file is damaged."
                )
            headers[name] = (tuple(shape), dtype)
        verify_members(archive, where)
    return headers


def read_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file as text: at most ``max_bytes``, UTF-8 (a byte-order mark is allowed)."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelError(
            f"The text file has {size / 1024**2:,.0f} MB; the limit is "
            f"{max_bytes / 1024**2:,.0f} MB."
        )
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"The file is not UTF-8 text (invalid byte at position {exc.start:,}); "
            "save it as UTF-8 and upload it again."
        ) from exc


def read_npz(
    path: str | Path, max_bytes: int = MAX_ARRAY_BYTES, max_inflated: int = MAX_INFLATED
) -> dict[str, np.ndarray]:
    """The arrays ``x``, ``y`` (and ``x_test``, ``y_test`` if present) of an uploaded ``.npz``.

    Compressed members may inflate to ``max_inflated`` bytes in all (stored ones cost nothing
    extra: they are as large in the file).
    """
    try:
        headers = npz_headers(Path(path), max_bytes, max_inflated)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        # No exception text: it can name paths on the worker.
        raise ModelError(
            "The file is not a readable .npz archive (write it with numpy.savez or "
            "numpy.savez_compressed)."
        ) from exc
    missing = [key for key in ("x", "y") if key not in headers]
    if missing:
        raise ModelError(
            f"The .npz file must contain arrays 'x' and 'y'; missing {', '.join(missing)} "
            f"(found: {', '.join(sorted(headers)) or 'nothing'})."
        )
    if ("x_test" in headers) != ("y_test" in headers):
        raise ModelError("Give both 'x_test' and 'y_test', or neither.")
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in ("x", "y", "x_test", "y_test") if key in headers}


def inspect_dataset_file(
    path: str | Path, fmt: str, *, max_inflated: int = MAX_INFLATED
) -> dict[str, Any]:
    """Check an uploaded data set file and summarise it (``fmt`` is ``"npz"`` or ``"text"``).

    ``max_inflated`` caps what the compressed members of an ``.npz`` may inflate to.
    """
    if fmt == "text":
        text = read_text(path)
        validate_text(text)
        return {"characters": len(text), "vocabulary": len(set(text))}
    arrays = read_npz(path, max_inflated=max_inflated)
    classes = validate_dataset(arrays["x"], arrays["y"])
    summary: dict[str, Any] = {
        "samples": len(arrays["y"]),
        "input_shape": list(arrays["x"].shape[1:]),
        "classes": classes,
    }
    if "x_test" in arrays:
        if arrays["x_test"].shape[1:] != arrays["x"].shape[1:]:
            raise ModelError(
                f"The test inputs have shape {list(arrays['x_test'].shape[1:])} per sample but "
                f"the training inputs have {list(arrays['x'].shape[1:])}."
            )
        validate_dataset(
            arrays["x_test"], arrays["y_test"], num_classes=classes, min_samples=1, split="test"
        )
        summary["test_samples"] = len(arrays["y_test"])
    return summary
