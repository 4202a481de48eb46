"""Inspect checkpoint files without executing them (pure Python; the web tier has no torch).

``.safetensors`` files are checked through their JSON header. ``.pt``/``.pth`` files are torch
zip archives whose ``data.pkl`` is a pickle: we walk its opcodes with ``pickletools`` (which
never executes anything) and accept it only when every global it references is one of the few
that ``torch.load(weights_only=True)`` itself would allow for tensors. A pickle that names
anything else (``os.system``, ``builtins.exec``, a user class …) needs full unpickling and is
refused here, before it is stored, so its code can never run.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from typing import IO

# Globals a tensor checkpoint legitimately references. ``*Storage`` classes are matched by name.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "UntypedStorage"),
    ("_codecs", "encode"),  # how protocol 2 pickles ``bytes``
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}
TORCH_DTYPES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2",
}  # fmt: skip
TENSOR_REBUILDERS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3")}
SAFETENSORS_DTYPES = {
    "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
    "U16", "U32", "U64", "C64",
}  # fmt: skip
MAX_HEADER = 100 * 2**20
MAX_PICKLE = 256 * 2**20


class CheckpointRefused(ValueError):
    """The file is not a checkpoint we will accept; the message says why, for a person."""


@dataclass
class CheckpointFacts:
    """What the scan learnt: format, number of tensors and, where the header says, their shapes."""

    format: str
    num_tensors: int
    num_elements: int | None = None
    tensors: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


# Protocol 2 pickles name Python 2 modules; read them as Python 3 would.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in ALLOWED_GLOBALS:
        return True
    if module == "torch" and (name.endswith("Storage") or name in TORCH_DTYPES):
        return True
    return False


def scan_pickle(data: IO[bytes], where: str = "data.pkl") -> int:
    """Check a pickle's globals against the allow-list; return how many tensors it rebuilds.

    Only opcodes are read. Strings pushed for ``STACK_GLOBAL`` are tracked through the memo so
    protocol 4+ pickles are checked as strictly as protocol 2 ones.
    """
    pushed: list[object] = []  # values of recent pushes we care about (strings, globals)
    memo: dict[int, object] = {}
    tensors = 0
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            name = opcode.name
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                glob: object = ("global", module, attr)
            elif name == "STACK_GLOBAL":
                if len(pushed) < 2 or not all(isinstance(v, str) for v in pushed[-2:]):
                    raise CheckpointRefused(f"{where}: a global is built in a way we refuse.")
                module, attr = str(pushed[-2]), str(pushed[-1])
                glob = ("global", module, attr)
            elif name in {"BINPUT", "LONG_BINPUT", "PUT"}:
                memo[int(arg)] = pushed[-1] if pushed else None
                continue
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
                continue
            elif name in {"BINGET", "LONG_BINGET", "GET"}:
                value = memo.get(int(arg))
                pushed.append(value)
                if isinstance(value, tuple) and (value[1], value[2]) in TENSOR_REBUILDERS:
                    tensors += 1
                continue
            elif name in {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}:
                raise CheckpointRefused(
                    f"{where}: the pickle builds arbitrary objects ({name}); only tensors and "
                    "plain containers are accepted."
                )
            else:
                pushed.append(arg if isinstance(arg, str) else None)
                del pushed[:-8]
                continue
            _kind, module, attr = glob  # type: ignore[misc]
            module = PY2_MODULES.get(module, module)
            if not _allowed(module, attr):
                raise CheckpointRefused(
                    f"{where} references {module}.{attr}, which would need full unpickling "
                    "(it can run code). Save only tensors — e.g. torch.save(model.state_dict()) "
                    "or the .safetensors format."
                )
            if (module, attr) in TENSOR_REBUILDERS:
                tensors += 1
            pushed.append(glob)
    except CheckpointRefused:
        raise
    except Exception as error:  # pickletools raises ValueError and friends on garbage
        raise CheckpointRefused(f"{where} is not a readable pickle ({error}).") from None
    return tensors


def scan_torch_zip(fileobj: IO[bytes], where: str = "checkpoint") -> int:
    """Scan a ``torch.save`` zip archive; return its tensor count."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile:
        raise CheckpointRefused(
            f"The {where} is not a torch zip archive. Files written with the legacy "
            "torch.save format or plain pickles are refused; re-save with a current torch.save "
            "or as .safetensors."
        ) from None
    pickles = [info for info in archive.infolist() if info.filename.endswith("data.pkl")]
    if len(pickles) != 1:
        raise CheckpointRefused(f"The {where} has no single data.pkl; it is not a torch.save file.")
    if pickles[0].file_size > MAX_PICKLE:
        raise CheckpointRefused(f"The {where}'s pickle is unreasonably large.")
    try:
        with archive.open(pickles[0]) as data:
            return scan_pickle(data, where=f"The {where}")
    except zipfile.BadZipFile as error:
        raise CheckpointRefused(f"The {where} is damaged: {error}.") from None


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
    elements = 0
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
        elements += numel
    if not tensors:
        raise CheckpointRefused("The .safetensors file holds no tensors.")
    fileobj.seek(0)
    return CheckpointFacts(
        format="safetensors",
        num_tensors=len(tensors),
        num_elements=elements,
        tensors=tensors,
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def scan_checkpoint(fileobj: IO[bytes], filename: str, size: int) -> CheckpointFacts:
    """Scan a checkpoint upload by its suffix; raise ``CheckpointRefused`` with a reason."""
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
    """Check a ``torch.export`` ``.pt2`` archive: an intact zip whose embedded pickles are safe.

    The worker loads it with ``torch.export.load``; nothing here executes its content.
    """
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
        damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError):
        raise CheckpointRefused(
            "This is not a valid torch.export archive: the zip is truncated or damaged. "
            "Create it with torch.export.save(torch.export.export(model, args), 'model.pt2')."
        ) from None
    if damaged is not None:
        raise CheckpointRefused(f"The archive member {damaged} is damaged (CRC mismatch).")
    names = archive.namelist()
    if not any(n.endswith("archive_format") for n in names) or not any(
        "/models/" in n or n.startswith("models/") for n in names
    ):
        raise CheckpointRefused(
            "This zip is not a torch.export archive (no archive_format / models entries). "
            "Create it with torch.export.save(...)."
        )
    for info in archive.infolist():
        if info.filename.endswith((".pt", ".pkl")):
            with archive.open(info) as member:
                if info.filename.endswith(".pkl"):
                    scan_pickle(member, where=f"Archive member {info.filename}")
                else:
                    scan_torch_zip(member, where=f"archive member {info.filename}")
    fileobj.seek(0)
