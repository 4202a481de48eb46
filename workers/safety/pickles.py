"""Checking torch pickles without running them (pure Python, no torch; the web tier uses it too).

A ``torch.save`` file is a zip archive whose ``data.pkl`` is a pickle. We walk its opcodes with
``pickletools`` — which never executes anything — and accept it only when every global it
references is one of the few that rebuild plain tensors (what ``torch.load(weights_only=True)``
needs for a state dict). A pickle that names anything else (``os.system``, ``builtins.exec``, a
user class …) would need full unpickling, so it is refused and its code never runs.
"""

from __future__ import annotations

import pickletools
import zipfile
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


class UnsafePickle(ModelError):
    """The file would need full unpickling (or is no pickle at all); the message says why."""


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
    except UnsafePickle:
        raise
    except Exception as error:  # noqa: BLE001 - pickletools raises assorted errors on garbage
        raise UnsafePickle(f"{where} is not a readable pickle ({error}).") from None
    return tensors


def scan_torch_zip(fileobj: IO[bytes], where: str = "The checkpoint") -> int:
    """Check a ``torch.save`` zip archive without loading it; return its tensor count."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, EOFError, OSError):
        raise UnsafePickle(
            f"{where} is not a torch zip archive. Files written with the legacy torch.save "
            "format and plain pickles are refused; re-save with a current torch.save or as "
            ".safetensors."
        ) from None
    with archive:
        pickles = [info for info in archive.infolist() if info.filename.endswith(".pkl")]
        if len(pickles) != 1 or not pickles[0].filename.endswith("data.pkl"):
            raise UnsafePickle(f"{where} does not have the layout torch.save writes.")
        if pickles[0].file_size > MAX_PICKLE:
            raise UnsafePickle(f"{where} holds an unreasonably large pickle.")
        try:
            with archive.open(pickles[0]) as data:
                return scan_pickle(data.read(), where=where)
        except zipfile.BadZipFile as error:
            raise UnsafePickle(f"{where} is damaged: {error}.") from None
