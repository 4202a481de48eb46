"""Convert official GHN checkpoints into our safe ``{"state_dict", "config"}`` format.

The published GHN files (``ghn3tm8.pt``, ``ghn3xlm16.pt``, ...) are joblib pickles of a bare
state dict: a plain pickle stream, possibly compressed. Unpickling runs arbitrary code, so
these files are read with :class:`RestrictedUnpickler`, whose ``find_class`` hands out only
the handful of functions that rebuild tensors and an ``OrderedDict``; any other global
(``os.system``, ``builtins.eval``, a user class, numpy) is refused before anything runs.

Pickled CPU tensors store their storage as the bytes of a small legacy ``torch.save`` file,
rebuilt by ``torch.storage._load_from_bytes``. We never hand out that function: our
replacement reads those bytes with ``torch.load(weights_only=True)``, so the nested pickle is
restricted too.

The result is written with ``torch.save`` and loads with ``torch.load(weights_only=True)``
(:func:`workers.ghn.model.load_ghn`). The config is inferred from the state dict as the
published loader does (:func:`workers.ghn.model.infer_config`).
"""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

from workers.errors import ModelError
from workers.ghn.model import canonical_state_dict, infer_config


class GHNFileError(ModelError):
    """A GHN file that cannot be read safely or is not a GHN state dict; says why."""


def _load_storage_bytes(data: bytes) -> Any:
    """Safe stand-in for ``torch.storage._load_from_bytes``: the nested file, weights only."""
    if not isinstance(data, bytes | bytearray):
        raise GHNFileError("a tensor storage in the file is not stored as bytes")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch's weights-only unpickler refused or the bytes are bad
        raise GHNFileError(f"a tensor storage could not be read safely: {exc}") from None


def _no_hooks(hooks: Any) -> None:
    if hooks:  # hooks would be callables attached to the tensor; a state dict has none
        raise GHNFileError("a tensor in the file carries backward hooks; refusing it")


def _rebuild_tensor(
    storage: Any, offset: int, size: Any, stride: Any, requires_grad: bool, hooks: Any, *rest: Any
) -> Tensor:
    """``_rebuild_tensor_v2`` without hooks or gradients: a plain tensor."""
    _no_hooks(hooks)
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise GHNFileError("a tensor in the file is not backed by a tensor storage")
    return torch._utils._rebuild_tensor_v2(
        storage, offset, size, stride, False, collections.OrderedDict(), *rest[:1]
    )


def _rebuild_parameter(data: Any, requires_grad: bool, hooks: Any, *rest: Any) -> Tensor:
    """``_rebuild_parameter`` as a plain tensor (a state dict needs no Parameter objects)."""
    _no_hooks(hooks)
    if not isinstance(data, Tensor):
        raise GHNFileError("a parameter in the file does not hold a tensor")
    return data


# (module, name) -> what find_class returns. Nothing else is ever resolved.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("_codecs", "encode"): __import__("_codecs").encode,  # how protocol 2 pickles bytes
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds tensors and plain containers.

    ``find_class`` resolves nothing but the allow-list above; every other global raises
    :class:`GHNFileError` before it could be called. Persistent ids (used by ``torch.save``
    files, which are read with ``torch.load(weights_only=True)`` instead) are refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global or refuse with a message naming it."""
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            hint = " (numpy arrays are not supported)" if module.startswith("numpy") else ""
            raise GHNFileError(
                f"refusing to load {module}.{name}: a GHN checkpoint may only contain tensors{hint}"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: plain pickles of a state dict have none."""
        raise GHNFileError("unexpected persistent id in a plain pickle; refusing it")


# joblib writes these compressions; each is read as a stream, never executed.
_MAGIC: list[tuple[bytes, Any]] = [
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f)),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
    (b"\x5d\x00\x00", lzma.LZMAFile),
]


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The pickle stream in ``raw``, decompressing joblib's formats on the fly."""
    head = raw.read(8)
    raw.seek(0)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(raw)
    if head[:1] == b"\x78":  # joblib's zlib compression: a single zlib stream
        return io.BytesIO(zlib.decompress(raw.read()))
    return raw


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read an official GHN file (joblib/pickle or torch.save) as {name: tensor}, safely.

    A ``torch.save`` zip is read with ``torch.load(weights_only=True)``; anything else goes
    through :class:`RestrictedUnpickler`. A wrapped ``{"state_dict": ...}`` is unwrapped.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GHNFileError(f"not a weights-only torch file: {exc}") from None
    else:
        with path.open("rb") as raw:
            try:
                data = RestrictedUnpickler(_decompressed(raw)).load()
            except GHNFileError:
                raise
            except Exception as exc:  # truncated or not a pickle
                raise GHNFileError(f"the file is not a readable pickle: {exc}") from None
    if isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()
    ):
        raise GHNFileError("the file does not hold a state dict of named tensors")
    return {k: v.detach().clone().contiguous() for k, v in data.items()}


def convert_official(src: str | Path, dst: str | Path | None = None) -> dict[str, Any]:
    """Convert an official GHN file to ``{"state_dict", "config"}`` (saved to ``dst`` if given).

    Keys are put into our layout (legacy top-level embedding tables move under ``gnn.0``) and
    the config is inferred from the tensors, as the published loader does.
    """
    state = canonical_state_dict(load_official_state_dict(src))
    try:
        config = infer_config(state)
    except (KeyError, StopIteration) as exc:
        raise GHNFileError(f"the state dict is not a GHN's (missing {exc})") from None
    result = {"state_dict": state, "config": config.to_dict()}
    if dst is not None:
        torch.save(result, dst)
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m workers.ghn.convert SRC DST``: convert one official file."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("src", help="official GHN file (joblib/pickle of a state dict)")
    parser.add_argument("dst", help="output file, read back with torch.load(weights_only=True)")
    args = parser.parse_args(argv)
    result = convert_official(args.src, args.dst)
    print(f"wrote {args.dst}: {len(result['state_dict'])} tensors, config {result['config']}")


if __name__ == "__main__":
    main()
