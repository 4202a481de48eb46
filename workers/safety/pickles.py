"""Checking torch pickles without running them (pure Python, no torch; the web tier uses it too).

A ``torch.save`` file is a zip archive whose ``data.pkl`` is a pickle. We walk its opcodes with
``pickletools`` — which never executes anything — and accept it only when every global it
references is one of the few that rebuild plain tensors (what ``torch.load(weights_only=True)``
needs for a state dict). A pickle that names anything else (``os.system``, ``builtins.exec``, a
user class …) would need full unpickling, so it is refused and its code never runs.
"""

from __future__ import annotations

import copy
import io
import os
import pickletools
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

from workers.errors import ModelError

ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.storage", "UntypedStorage"),
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
# Protocol 2 pickles name Python 2 modules; read them as Python 3 does.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# Opcodes that call something not named by a checked global, or reach copyreg's registry.
FORBIDDEN_OPCODES = {"INST", "OBJ", "EXT1", "EXT2", "EXT4"}
MAX_PICKLE = 256 * 2**20
# What the members of one uploaded archive may inflate to, in all: compressed members are the
# only way a small file becomes a lot of data, so their declared sizes are held against this
# budget before anything is inflated (the web tier passes its UPLOAD_MAX_INFLATED setting).
MAX_INFLATED = 512 * 2**20
MAX_MEMBERS = 50_000  # the central directory is parsed into Python objects, ~1 KB each
CHUNK = 1 << 20


class UnsafePickle(ModelError):
    """The file would need full unpickling (or is no pickle at all); the message says why."""


class ArchiveRefused(ModelError):
    """A zip archive that is damaged, crafted or would inflate past the budget."""


def human_size(n: int) -> str:
    """``n`` bytes for a person: ``1.5 GB``, ``512 MB``, ``3 KB``, ``12 bytes`` (powers of 1024)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MB"
    if n >= 2**10:
        return f"{n / 2**10:.0f} KB"
    return f"{n} bytes"


def _shown(name: str) -> str:
    return repr(name if len(name) <= 100 else name[:60] + "…" + name[-39:])


def open_zip(source: str | os.PathLike | IO[bytes], where: str = "The archive") -> zipfile.ZipFile:
    """``zipfile.ZipFile(source)``, refusing first an archive whose central directory claims
    more than ``MAX_MEMBERS`` entries (parsing it is what would cost the memory).

    Raises ``zipfile.BadZipFile`` (or ``OSError``/``EOFError``) for something that is no zip.
    """
    named = isinstance(source, (str, os.PathLike))
    handle = open(source, "rb") if named else source  # noqa: SIM115
    try:
        handle.seek(0)
        end = zipfile._EndRecData(handle)  # noqa: SLF001 - the same parser ZipFile runs next
        if end is None:
            raise zipfile.BadZipFile("File is not a zip file")
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:  # noqa: SLF001
            raise ArchiveRefused(
                f"{where} has {end[zipfile._ECD_ENTRIES_TOTAL]:,} entries; "  # noqa: SLF001
                f"at most {MAX_MEMBERS:,} are accepted."
            )
        handle.seek(0)
    finally:
        if handle is not source:
            handle.close()
    return zipfile.ZipFile(source)


def check_declared_sizes(
    archive: zipfile.ZipFile, where: str = "The archive", max_inflated: int = MAX_INFLATED
) -> None:
    """Refuse, before anything is inflated, members that are encrypted, use a compression
    other than stored/deflate, are stored with two different sizes, or whose declared sizes
    (alone or together) inflate past ``max_inflated``. Stored members cost no inflation: they
    are as large in the upload as when read."""
    total = 0
    for info in archive.infolist():
        name = _shown(info.filename)
        if info.flag_bits & 0x1:
            raise ArchiveRefused(f"{where} member {name} is encrypted; that is not accepted.")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ArchiveRefused(
                    f"{where} member {name} declares {human_size(info.file_size)} but stores "
                    f"{human_size(info.compress_size)}; the file is damaged."
                )
            continue
        if info.compress_type != zipfile.ZIP_DEFLATED:
            raise ArchiveRefused(
                f"{where} member {name} uses a compression method other than deflate, "
                "which is not accepted."
            )
        if info.file_size > max_inflated:
            raise ArchiveRefused(
                f"{where} member {name} would inflate to {human_size(info.file_size)}; "
                f"the limit is {human_size(max_inflated)}."
            )
        total += info.file_size
        if total > max_inflated:
            raise ArchiveRefused(
                f"{where} would inflate to more than {human_size(max_inflated)} in all "
                f"(its compressed members declare {human_size(total)} so far); the limit is "
                f"{human_size(max_inflated)}."
            )


def iter_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str = "The archive"
) -> Iterator[bytes]:
    """A member's bytes in chunks of at most ``CHUNK``, never more than it declares.

    Inflation stops one byte past the declared size, so a member whose headers claim little
    but whose data inflates to much more is refused as soon as that shows; its CRC is checked
    as the last chunk arrives. Call ``check_declared_sizes`` first.
    """
    name = _shown(info.filename)
    # zipfile stops at the declared size (and would then check the CRC of what it read), so a
    # member that inflates to more would pass unnoticed. Read one byte past the declared end
    # instead, with the CRC checked here, over exactly the bytes delivered.
    probe = copy.copy(info)
    probe.file_size = info.file_size + 1
    del probe.CRC  # zipfile checks no CRC without one
    seen = 0
    crc = 0
    try:
        with archive.open(probe) as member:
            while chunk := member.read(min(CHUNK, info.file_size + 1 - seen)):
                seen += len(chunk)
                if seen > info.file_size:
                    raise ArchiveRefused(
                        f"{where} member {name} inflates to more than the "
                        f"{human_size(info.file_size)} its header declares; the file is "
                        "damaged or crafted."
                    )
                crc = zlib.crc32(chunk, crc)
                yield chunk
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError … on bad data
        raise ArchiveRefused(f"{where} member {name} is damaged ({error}).") from None
    if seen != info.file_size:
        raise ArchiveRefused(
            f"{where} member {name} holds {human_size(seen)}, less than the "
            f"{human_size(info.file_size)} its header declares; the file is truncated or damaged."
        )
    if crc != info.CRC:
        raise ArchiveRefused(f"{where} member {name} is damaged (CRC mismatch).")


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str = "The archive"
) -> bytes:
    """The member's bytes, checked as ``iter_member`` checks them (mind its declared size)."""
    return b"".join(iter_member(archive, info, where))


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for ``pickletools.genops``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        while not self._chunk:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk = memoryview(chunk)
        n = min(len(buffer), len(self._chunk))
        buffer[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos


def stream_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str = "The archive"
) -> tuple[IO[bytes], Iterator[bytes]]:
    """A buffered file over the member, checked as ``iter_member`` checks it, and the chunk
    iterator behind it (exhaust that to finish the CRC check)."""
    chunks = iter_member(archive, info, where)
    return io.BufferedReader(_ChunkStream(chunks), CHUNK // 16), chunks


def verify_members(archive: zipfile.ZipFile, where: str = "The archive") -> None:
    """Stream every member once: CRC intact, no more and no less data than declared.
    Holds one chunk in memory at a time (what ``testzip`` does, plus the size checks)."""
    for info in archive.infolist():
        for _chunk in iter_member(archive, info, where):
            pass


def is_allowed_global(module: str, name: str) -> bool:
    """Whether ``module.name`` may appear in a tensor-only pickle."""
    module = PY2_MODULES.get(module, module)
    if (module, name) in ALLOWED_GLOBALS:
        return True
    return module == "torch" and (name.endswith("Storage") or name in TORCH_DTYPES)


def scan_pickle(data: IO[bytes] | bytes, where: str = "The pickle") -> int:
    """Check a pickle's globals against the allow-list; return how many tensors it rebuilds.

    Only opcodes are read. Values pushed for ``STACK_GLOBAL`` are followed through the memo, so
    protocol 4+ pickles (which reuse memoised module names) are checked as strictly as
    protocol 2 ones; a ``STACK_GLOBAL`` whose names are not plain strings is refused.
    """
    pushed: list[object] = []  # recent pushes we can name (strings and globals), else None
    memo: dict[int, object] = {}
    tensors = 0
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            name = opcode.name
            if name in FORBIDDEN_OPCODES:
                raise UnsafePickle(
                    f"{where} builds arbitrary objects ({name}); only tensors and plain "
                    "containers are accepted."
                )
            if name in {"BINPUT", "LONG_BINPUT", "PUT"}:
                memo[int(arg)] = pushed[-1] if pushed else None
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
                continue
            if name in {"BINGET", "LONG_BINGET", "GET"}:
                value = memo.get(int(arg))
                if isinstance(value, tuple) and value in TENSOR_REBUILDERS:
                    tensors += 1
                pushed.append(value)
                continue
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
            elif name == "STACK_GLOBAL":
                if len(pushed) < 2 or not all(isinstance(v, str) for v in pushed[-2:]):
                    raise UnsafePickle(f"{where} builds a global in a way we refuse.")
                module, attr = str(pushed[-2]), str(pushed[-1])
            else:
                pushed.append(arg if isinstance(arg, str) else None)
                del pushed[:-8]
                continue
            module = PY2_MODULES.get(module, module)
            if not is_allowed_global(module, attr):
                raise UnsafePickle(
                    f"{where} references {module}.{attr}, which would need full unpickling "
                    "(it can run code). Save only tensors — e.g. "
                    "torch.save(model.state_dict()) — or use the .safetensors format."
                )
            if (module, attr) in TENSOR_REBUILDERS:
                tensors += 1
            pushed.append((module, attr))
    except ModelError:  # ours, or the archive under a streamed pickle refused its data
        raise
    except Exception as error:  # noqa: BLE001 - pickletools raises assorted errors on garbage
        raise UnsafePickle(f"{where} is not a readable pickle ({error}).") from None
    return tensors


def scan_torch_zip(
    fileobj: IO[bytes], where: str = "The checkpoint", max_inflated: int = MAX_INFLATED
) -> int:
    """Check a ``torch.save`` zip archive without loading it; return its tensor count.

    Declared sizes are checked against ``max_inflated`` before anything is inflated and the
    pickle is read within its declared size (see ``iter_member``).
    """
    try:
        archive = open_zip(fileobj, where)
    except (zipfile.BadZipFile, EOFError, OSError):
        raise UnsafePickle(
            f"{where} is not a torch zip archive. Files written with the legacy torch.save "
            "format and plain pickles are refused; re-save with a current torch.save or as "
            ".safetensors."
        ) from None
    with archive:
        check_declared_sizes(archive, where, max_inflated)
        pickles = [info for info in archive.infolist() if info.filename.endswith(".pkl")]
        if len(pickles) != 1 or not pickles[0].filename.endswith("data.pkl"):
            raise UnsafePickle(f"{where} does not have the layout torch.save writes.")
        if pickles[0].file_size > MAX_PICKLE:
            raise UnsafePickle(f"{where} holds an unreasonably large pickle.")
        # Streamed, so that memory stays one chunk whatever the pickle's size.
        data, chunks = stream_member(archive, pickles[0], where)
        tensors = scan_pickle(data, where=where)
        for _chunk in chunks:  # the rest (normally nothing): size and CRC checks
            pass
        return tensors
