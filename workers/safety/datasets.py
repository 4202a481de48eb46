"""Checks of uploaded data sets that need numpy but not torch, shared by the web tier (on upload)
and the worker (before training), so both refuse exactly the same files.

Every problem raises ``workers.errors.ModelError`` with a message for the person who uploaded
the file. ``.npz`` files are opened with ``allow_pickle=False``; the members' declared sizes
are held against an inflation budget and their array headers read before the data, and each
member is streamed once within its declared size (CRC checked) before numpy loads it, so object
arrays and huge (or zip-bomb) arrays are refused without loading. ``inspect_dataset_file`` (the
web tier) never loads the arrays at all: it checks their values in chunks as the members stream
(``scan_npz``), so its memory stays a few MB whatever the size of the data set.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workers.errors import ModelError
from workers.safety.pickles import (
    MAX_INFLATED,
    check_declared_sizes,
    iter_member,
    open_zip,
    verify_members,
)

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
    return _check_split(
        x.shape,
        x.dtype,
        y.shape,
        y.dtype,
        nonfinite=lambda: int(np.size(x) - np.isfinite(x).sum()),
        label_range=lambda: (int(y.min()), int(y.max())),
        num_classes=num_classes,
        min_samples=min_samples,
        split=split,
    )


def _check_split(
    x_shape: tuple[int, ...],
    x_dtype: np.dtype,
    y_shape: tuple[int, ...],
    y_dtype: np.dtype,
    *,
    nonfinite: Callable[[], int],
    label_range: Callable[[], tuple[int, int]],
    num_classes: int | None,
    min_samples: int,
    split: str,
) -> int:
    # The checks of ``validate_dataset`` from shapes and dtypes, and from the two values that
    # need the data (the count of NaN or infinite inputs, asked only for float inputs, and the
    # smallest and largest label), so that loaded arrays and streamed ones get the same checks
    # in the same order, with the same messages.
    if len(x_shape) < 2:
        raise ModelError(
            f"The {split} inputs x must have a sample axis and at least one feature axis "
            f"(shape [samples, ...]); got shape {list(x_shape)}."
        )
    if not (np.issubdtype(x_dtype, np.floating) or np.issubdtype(x_dtype, np.integer)):
        raise ModelError(f"The {split} inputs x must be numbers; got dtype {x_dtype}.")
    if len(y_shape) != 1 or not np.issubdtype(y_dtype, np.integer):
        raise ModelError(
            f"The {split} labels y must be a 1-D array of integer class ids; got shape "
            f"{list(y_shape)} with dtype {y_dtype}."
        )
    if x_shape[0] != y_shape[0]:
        raise ModelError(
            f"The {split} split has {x_shape[0]} inputs but {y_shape[0]} labels; "
            "x and y must have the same length."
        )
    if y_shape[0] < min_samples:
        raise ModelError(
            f"The {split} split has only {y_shape[0]} samples; at least {min_samples} are needed."
        )
    if np.issubdtype(x_dtype, np.floating):
        bad = nonfinite()
        if bad:
            raise ModelError(f"The {split} inputs x contain {bad} NaN or infinite values.")
    low, high = label_range()
    classes = high + 1 if num_classes is None else num_classes
    if low < 0 or high >= classes:
        raise ModelError(
            f"The {split} labels must lie in [0, {classes}); found labels from {low} to {high}."
        )
    if low == high:  # one distinct label: any two different ones make at least two classes
        raise ModelError(f"The {split} labels contain 1 distinct class; at least 2 are needed.")
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


@dataclass
class _Member:
    """An ``.npy`` member of an archive, from its header: where its data starts and what it is."""

    info: zipfile.ZipInfo
    offset: int  # bytes of .npy header before the data
    shape: tuple[int, ...]
    dtype: np.dtype


def _npy_members(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, _Member]:
    # Read each member's .npy header (a few dozen bytes) to learn shape and dtype without
    # decompressing the data, so object arrays and oversized arrays are refused up front.
    members: dict[str, _Member] = {}
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
        members[name] = _Member(info, header_bytes, tuple(shape), dtype)
    return members


def npz_headers(
    path: Path, max_bytes: int, max_inflated: int = MAX_INFLATED
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    # Refuse members whose declared sizes inflate past the budget, then read each member's
    # .npy header (see _npy_members); last, stream every member once (within its declared
    # size, CRC checked), so a member that lies about its size is stopped before numpy reads it.
    where = "The .npz archive"
    with open_zip(str(path), where) as archive:
        check_declared_sizes(archive, where, max_inflated)
        members = _npy_members(archive, max_bytes)
        verify_members(archive, where)
    return {name: (m.shape, m.dtype) for name, m in members.items()}


@dataclass
class ArrayStats:
    """What the checks need from an array's values, gathered as its member streams."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nonfinite: int = 0  # NaN or infinite values (float arrays only)
    low: int | None = None  # smallest and largest value (integer arrays only)
    high: int | None = None


def _values(chunks: Iterable[bytes], offset: int, dtype: np.dtype) -> Iterable[np.ndarray]:
    # A member's data as arrays of whole items, chunk by chunk: the .npy header skipped, the
    # bytes of an item split across two chunks carried over to the next.
    carry = b""
    itemsize = dtype.itemsize
    for chunk in chunks:
        if offset:
            skip = min(offset, len(chunk))
            chunk, offset = chunk[skip:], offset - skip
        if carry:
            chunk, carry = carry + chunk, b""
        whole = len(chunk) - len(chunk) % itemsize
        if whole < len(chunk):
            carry = chunk[whole:]
        if whole:
            yield np.frombuffer(chunk, dtype=dtype, count=whole // itemsize)


def _scan(
    archive: zipfile.ZipFile, member: _Member | None, info: zipfile.ZipInfo, where: str
) -> ArrayStats | None:
    # Stream one member (size and CRC checked by iter_member); for a data set array, gather
    # its stats on the way. Memory: one chunk and what numpy makes of it.
    chunks = iter_member(archive, info, where)
    if member is None or member.dtype.itemsize == 0:
        for _chunk in chunks:
            pass
        return None if member is None else ArrayStats(member.shape, member.dtype)
    stats = ArrayStats(member.shape, member.dtype)
    floating = np.issubdtype(member.dtype, np.floating)
    integer = np.issubdtype(member.dtype, np.integer)
    for values in _values(chunks, member.offset, member.dtype):
        if floating:
            stats.nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
        elif integer and values.size:
            low, high = int(values.min()), int(values.max())
            stats.low = low if stats.low is None else min(stats.low, low)
            stats.high = high if stats.high is None else max(stats.high, high)
    return stats


def scan_npz(
    path: str | Path, max_bytes: int = MAX_ARRAY_BYTES, max_inflated: int = MAX_INFLATED
) -> dict[str, ArrayStats]:
    """Shapes, dtypes and value stats of the arrays ``x``, ``y`` (and ``x_test``, ``y_test``
    if present) of an uploaded ``.npz``, without loading them.

    Checks the archive as ``read_npz`` does (declared sizes, headers, every member streamed
    once within its declared size, CRC checked) and refuses it with the same messages; the
    arrays' values are read on that one pass, a chunk at a time.
    """
    where = "The .npz archive"
    try:
        with open_zip(str(path), where) as archive:
            check_declared_sizes(archive, where, max_inflated)
            members = _npy_members(archive, max_bytes)
            wanted = {
                id(m.info): m
                for name, m in members.items()
                if name in ("x", "y", "x_test", "y_test")
            }
            stats: dict[str, ArrayStats] = {}
            for info in archive.infolist():
                found = _scan(archive, wanted.get(id(info)), info, where)
                if found is not None:
                    stats[info.filename[: -len(".npy")]] = found
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _unreadable() from exc
    _require_arrays(members)
    return {name: stats[name] for name in ("x", "y", "x_test", "y_test") if name in stats}


def _unreadable() -> ModelError:
    # No exception text: it can name paths on the worker.
    return ModelError(
        "The file is not a readable .npz archive (write it with numpy.savez or "
        "numpy.savez_compressed)."
    )


def _require_arrays(headers: dict[str, Any]) -> None:
    missing = [key for key in ("x", "y") if key not in headers]
    if missing:
        raise ModelError(
            f"The .npz file must contain arrays 'x' and 'y'; missing {', '.join(missing)} "
            f"(found: {', '.join(sorted(headers)) or 'nothing'})."
        )
    if ("x_test" in headers) != ("y_test" in headers):
        raise ModelError("Give both 'x_test' and 'y_test', or neither.")


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
        raise _unreadable() from exc
    _require_arrays(headers)
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in ("x", "y", "x_test", "y_test") if key in headers}


def inspect_dataset_file(
    path: str | Path, fmt: str, *, max_inflated: int = MAX_INFLATED
) -> dict[str, Any]:
    """Check an uploaded data set file and summarise it (``fmt``: ``npz``, ``images``, ``text``).

    ``max_inflated`` caps what the compressed members of an ``.npz`` may inflate to. An
    ``.npz`` gets the checks of ``read_npz`` and ``validate_dataset`` without its arrays ever
    being loaded (see ``scan_npz``): memory stays a few MB whatever its size.
    """
    if fmt == "text":
        text = read_text(path)
        validate_text(text)
        return {"characters": len(text), "vocabulary": len(set(text))}
    if fmt == "images":
        from workers.safety.image_folder import plan_image_folder

        return plan_image_folder(path, max_inflated=max_inflated).summary()
    arrays = scan_npz(path, max_inflated=max_inflated)
    x, y = arrays["x"], arrays["y"]
    classes = _check_stats(x, y, num_classes=None, min_samples=MIN_SAMPLES, split="training")
    summary: dict[str, Any] = {
        "samples": y.shape[0],
        "input_shape": list(x.shape[1:]),
        "classes": classes,
    }
    if "x_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        if x_test.shape[1:] != x.shape[1:]:
            raise ModelError(
                f"The test inputs have shape {list(x_test.shape[1:])} per sample but "
                f"the training inputs have {list(x.shape[1:])}."
            )
        _check_stats(x_test, y_test, num_classes=classes, min_samples=1, split="test")
        summary["test_samples"] = y_test.shape[0]
    return summary


def _check_stats(
    x: ArrayStats, y: ArrayStats, *, num_classes: int | None, min_samples: int, split: str
) -> int:
    def label_range() -> tuple[int, int]:
        if y.low is None or y.high is None:  # no labels: as numpy's min() of an empty array
            raise ModelError(f"The {split} split has no labels.")
        return y.low, y.high

    return _check_split(
        x.shape,
        x.dtype,
        y.shape,
        y.dtype,
        nonfinite=lambda: x.nonfinite,
        label_range=label_range,
        num_classes=num_classes,
        min_samples=min_samples,
        split=split,
    )
