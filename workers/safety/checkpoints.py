"""Inspect uploaded checkpoints and export archives without executing them (no torch here).

``.safetensors`` files are checked through their JSON header. Torch pickles (``.pt``/``.pth``
and those inside ``.pt2`` archives) are checked opcode by opcode by ``workers.safety.pickles``;
``.pt2`` archives as a whole by ``workers.safety.pt2``. Both are pure Python, shared with the
worker, so the web tier and the worker refuse exactly the same files.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from typing import IO

from workers.errors import ModelError
from workers.safety.pickles import MAX_INFLATED, open_zip, scan_torch_zip
from workers.safety.pt2 import check_pt2_archive

# Bytes per element of each dtype the safetensors format names.
SAFETENSORS_DTYPES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8, "C64": 8,
}  # fmt: skip
MAX_HEADER = 100 * 2**20
# Statistics are read for files up to this size (one streamed pass, a few MB at a time).
MAX_STATISTICS_BYTES = 4 * 2**30
_STATISTICS_CHUNK = 1 << 22
# numpy types of the dtypes statistics are read for (BF16 is widened by hand).
_NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
}  # fmt: skip


class CheckpointRefused(ModelError):
    """The file is not one we will accept; the message says why, for a person."""


@dataclass
class CheckpointFacts:
    """What the scan learnt: format, number of tensors and, where the header says, their shapes."""

    format: str
    num_tensors: int
    num_elements: int | None = None
    tensors: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def scan_safetensors(fileobj: IO[bytes], size: int) -> CheckpointFacts:
    """Read and check a ``.safetensors`` header: JSON, dtypes, offsets within the file."""
    fileobj.seek(0)
    raw = fileobj.read(8)
    if len(raw) < 8:
        raise CheckpointRefused("The file is too short to be .safetensors.")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len == 0 or header_len > MAX_HEADER or 8 + header_len > size:
        raise CheckpointRefused("The .safetensors header length is invalid; is the file damaged?")
    try:
        header = json.loads(fileobj.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointRefused("The .safetensors header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise CheckpointRefused("The .safetensors header is not a JSON object.")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict):
        raise CheckpointRefused("The .safetensors metadata is not a JSON object.")
    data_size = size - 8 - header_len
    tensors: list[dict] = []
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry_fields(name, entry)
        numel = 1
        for dim in shape:
            numel *= dim
        if not 0 <= begin <= end <= data_size:
            raise CheckpointRefused(
                f"Tensor '{name}' points outside the file; the file is truncated or damaged."
            )
        if end - begin != numel * SAFETENSORS_DTYPES[dtype]:
            raise CheckpointRefused(
                f"Tensor '{name}' claims {numel:,} {dtype} elements but holds {end - begin:,} "
                "bytes; the header does not match the data."
            )
        spans.append((begin, end, name))
        tensors.append({"name": name, "dtype": dtype, "shape": list(shape), "numel": numel})
    # As the real loader demands: the tensors tile the data buffer exactly, in offset order,
    # without overlaps, holes or trailing bytes.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise CheckpointRefused(
                f"Tensor '{name}' overlaps another or leaves a gap (offset {begin:,}, "
                f"expected {position:,}); the file is damaged."
            )
        position = end
    if position != data_size:
        raise CheckpointRefused(
            f"The .safetensors data has {data_size - position:,} bytes no tensor accounts for."
        )
    if not tensors:
        raise CheckpointRefused("The .safetensors file holds no tensors.")
    if size <= MAX_STATISTICS_BYTES:
        for tensor, (begin, end) in zip(tensors, _spans_by_name(spans, tensors), strict=True):
            stats = tensor_statistics(fileobj, 8 + header_len + begin, end - begin, tensor["dtype"])
            if stats is not None:
                tensor["stats"] = stats
    fileobj.seek(0)
    return CheckpointFacts(
        format="safetensors",
        num_tensors=len(tensors),
        num_elements=sum(t["numel"] for t in tensors),
        tensors=tensors,
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def _spans_by_name(
    spans: list[tuple[int, int, str]], tensors: list[dict]
) -> list[tuple[int, int]]:
    where = {name: (begin, end) for begin, end, name in spans}
    return [where[t["name"]] for t in tensors]


def tensor_statistics(fileobj: IO[bytes], offset: int, length: int, dtype: str) -> dict | None:
    """Mean, standard deviation, minimum and maximum of one tensor's values, read from the
    file in chunks of a few MB (the weight statistics the graph viewer shows); ``nonfinite``
    counts NaN and infinite values, which the other figures leave out. None for dtypes
    without a numpy reading (bool, fp8, complex) and for empty tensors."""
    import numpy as np

    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    if numpy_dtype is None or length == 0:
        return None
    item = np.dtype(numpy_dtype).itemsize
    count, total, squares, nonfinite = 0, 0.0, 0.0, 0
    low, high = np.inf, -np.inf
    fileobj.seek(offset)
    remaining = length
    while remaining > 0:
        raw = fileobj.read(min(_STATISTICS_CHUNK - _STATISTICS_CHUNK % item, remaining))
        if not raw:
            break
        remaining -= len(raw)
        values = np.frombuffer(raw, dtype=numpy_dtype)
        if dtype == "BF16":  # the upper half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        values = values.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            nonfinite += int((~finite).sum())
            values = values[finite]
        if values.size:
            count += values.size
            total += float(values.sum())
            squares += float(np.square(values).sum())
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    if count == 0:
        return {"nonfinite": nonfinite} if nonfinite else None
    mean = total / count
    std = max(squares / count - mean * mean, 0.0) ** 0.5
    stats = {"mean": mean, "std": std, "min": low, "max": high}
    if nonfinite:
        stats["nonfinite"] = nonfinite
    # Six significant digits: enough to read, and tiny spreads (1e-8) are not rounded to 0.
    return {key: float(f"{value:.6g}") if isinstance(value, float) else value
            for key, value in stats.items()}  # fmt: skip


def _entry_fields(name: str, entry: object) -> tuple[str, list[int], int, int]:
    """dtype, shape and byte offsets of one header entry, typed as the real loader types them:
    integers only (no floats, no booleans), non-negative."""

    def is_count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(entry, dict):
        raise CheckpointRefused(f"Tensor '{name}' has a malformed header entry.")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise CheckpointRefused(f"Tensor '{name}' has an unknown dtype {dtype!r}.")
    if not isinstance(shape, list) or not all(is_count(d) for d in shape):
        raise CheckpointRefused(
            f"Tensor '{name}' has a malformed shape: dimensions must be non-negative integers."
        )
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(is_count, offsets)):
        raise CheckpointRefused(
            f"Tensor '{name}' has malformed data offsets: two non-negative integers expected."
        )
    return dtype, shape, offsets[0], offsets[1]


def scan_checkpoint(
    fileobj: IO[bytes], filename: str, size: int, *, max_inflated: int = MAX_INFLATED
) -> CheckpointFacts:
    """Scan a checkpoint upload by its suffix; raise ``ModelError`` with a reason.

    ``max_inflated`` caps what the compressed members of a torch zip may inflate to."""
    lower = filename.lower()
    if lower.endswith(".safetensors"):
        return scan_safetensors(fileobj, size)
    if lower.endswith((".pt", ".pth")):
        fileobj.seek(0)
        count = scan_torch_zip(fileobj, max_inflated=max_inflated)
        fileobj.seek(0)
        if count == 0:
            raise CheckpointRefused("The checkpoint holds no tensors.")
        return CheckpointFacts(format="torch", num_tensors=count)
    raise CheckpointRefused("Checkpoints must be .safetensors, .pt or .pth files.")


def scan_export_archive(fileobj: IO[bytes], max_inflated: int = MAX_INFLATED) -> None:
    """Check a ``torch.export`` ``.pt2`` archive: intact, and loadable without running code.

    Every member's declared size is held against ``max_inflated`` (for compressed members)
    before anything is inflated; then each is streamed once within that size, its CRC checked
    (see ``workers.safety.pt2.check_pt2``). The worker loads it with ``torch.export.load`` (in
    its sandbox); nothing here executes it.
    """
    fileobj.seek(0)
    try:
        archive = open_zip(fileobj, "The .pt2 archive")
    except (zipfile.BadZipFile, EOFError, OSError):
        raise CheckpointRefused(
            "This is not a valid torch.export archive: the zip is truncated or damaged. "
            "Create it with torch.export.save(torch.export.export(model, args), 'model.pt2')."
        ) from None
    with archive:
        check_pt2_archive(archive, max_inflated=max_inflated)
    fileobj.seek(0)
