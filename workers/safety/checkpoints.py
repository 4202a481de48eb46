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
from workers.safety.pickles import scan_torch_zip
from workers.safety.pt2 import check_pt2

SAFETENSORS_DTYPES = {
    "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
    "U16", "U32", "U64", "C64",
}  # fmt: skip
MAX_HEADER = 100 * 2**20


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
    data_size = size - 8 - header_len
    tensors: list[dict] = []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            numel = 1
            for dim in shape:
                numel *= int(dim)
        except (KeyError, TypeError, ValueError):
            raise CheckpointRefused(f"Tensor '{name}' has a malformed header entry.") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointRefused(f"Tensor '{name}' has an unknown dtype {dtype!r}.")
        if not 0 <= begin <= end <= data_size:
            raise CheckpointRefused(
                f"Tensor '{name}' points outside the file; the file is truncated or damaged."
            )
        tensors.append({"name": name, "dtype": dtype, "shape": list(shape), "numel": numel})
    if not tensors:
        raise CheckpointRefused("The .safetensors file holds no tensors.")
    fileobj.seek(0)
    return CheckpointFacts(
        format="safetensors",
        num_tensors=len(tensors),
        num_elements=sum(t["numel"] for t in tensors),
        tensors=tensors,
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def scan_checkpoint(fileobj: IO[bytes], filename: str, size: int) -> CheckpointFacts:
    """Scan a checkpoint upload by its suffix; raise ``ModelError`` with a reason."""
    lower = filename.lower()
    if lower.endswith(".safetensors"):
        return scan_safetensors(fileobj, size)
    if lower.endswith((".pt", ".pth")):
        fileobj.seek(0)
        count = scan_torch_zip(fileobj)
        fileobj.seek(0)
        if count == 0:
            raise CheckpointRefused("The checkpoint holds no tensors.")
        return CheckpointFacts(format="torch", num_tensors=count)
    raise CheckpointRefused("Checkpoints must be .safetensors, .pt or .pth files.")


def scan_export_archive(fileobj: IO[bytes]) -> None:
    """Check a ``torch.export`` ``.pt2`` archive: intact, and loadable without running code.

    The worker loads it with ``torch.export.load`` (in its sandbox); nothing here executes it.
    """
    fileobj.seek(0)
    try:
        damaged = zipfile.ZipFile(fileobj).testzip()
    except (zipfile.BadZipFile, EOFError, OSError):
        raise CheckpointRefused(
            "This is not a valid torch.export archive: the zip is truncated or damaged. "
            "Create it with torch.export.save(torch.export.export(model, args), 'model.pt2')."
        ) from None
    if damaged is not None:
        raise CheckpointRefused(f"The archive member {damaged} is damaged (CRC mismatch).")
    fileobj.seek(0)
    check_pt2(fileobj)
    fileobj.seek(0)
