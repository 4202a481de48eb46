"""Static safety check of a ``torch.export`` archive (.pt2) before ``torch.export.load`` sees it.

``torch.export.load`` is documented as unsafe for untrusted files. In torch 2.14 it can run
arbitrary code in several ways, all of which this module refuses or verifies without running
anything (pure Python, no torch import):

* ``data/sample_inputs/<model>.pt`` goes through ``torch.load(weights_only=True)`` but silently
  retries with ``weights_only=False`` if that fails, i.e. a full, arbitrary unpickle.
  We check the nested ``torch.save`` archive with ``workers.safety.pickles`` (opcodes only).
* weights/constants flagged ``use_pickle`` (tensor subclasses) are loaded with
  ``torch.load(weights_only=False)``; ``opaque_obj_*`` constants with ``pickle.loads``;
  ``custom_obj_*`` constants with the TorchScript unpickler. All refused.
* ``data/aotinductor/...`` makes the loader ``dlopen`` a compiled shared library. Refused,
  like every other path that is not on the allowlist below.
* symbolic-shape expressions (``expr_str`` in ``models/<model>.json``) are parsed with
  ``sympy.sympify``, which calls ``eval``. Each must consist of whitelisted sympy constructor
  names, shape-symbol names, numbers and operators (no attributes, subscripts or other names).
* if the new-format loader fails, ``torch.export.load`` falls back to a legacy zip layout
  whose ``serialized_*.pt`` members go through the same unsafe retry. Members outside a single
  top-level folder (where the legacy files live) are refused.

The worker additionally runs the actual load in the resource-limited sandbox subprocess, so
this check is one of two layers.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from workers.errors import ModelError
from workers.safety.pickles import (
    MAX_INFLATED,
    check_declared_sizes,
    iter_member,
    open_zip,
    read_member,
    scan_torch_zip,
)

# Files a plain torch.export.save archive contains, relative to its top-level folder.
_ALLOWED_MEMBERS = [
    re.compile(p)
    for p in (
        r"archive_format",
        r"archive_version",
        r"byteorder",
        r"version",
        r"\.data/[A-Za-z0-9_.]+",
        r"models/[A-Za-z0-9_.-]+\.json",
        r"data/weights/[A-Za-z0-9_.-]+_weights_config\.json",
        r"data/weights/weight_\d+",
        r"data/constants/[A-Za-z0-9_.-]+_constants_config\.json",
        r"data/constants/tensor_\d+",
        r"data/sample_inputs/[A-Za-z0-9_.-]+\.pt",
        r"extra/[^/]+",
    )
]

# Names sympy may see in a serialised shape expression: srepr constructors, assumptions used
# as keyword arguments, and the functions torch's deserializer passes to sympify as locals.
_SAFE_SYMPY_NAMES = frozenset(
    """
    Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling Tuple
    Eq Ne Lt Le Gt Ge And Or Not True False oo zoo nan Infinity NegativeInfinity
    StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality
    positive negative nonnegative nonpositive integer real finite infinite zero nonzero
    commutative even odd
    FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv LShift
    RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator
    TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity
    """.split()
)
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")
_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<string>'\w*')|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%(),<>=&|~]))"
)

# JSON is parsed whole into Python objects, which can take tens of times its size.
_MAX_JSON_BYTES = 32 << 20
_WHERE = "The .pt2 archive"
_SPOOL = 8 << 20  # example inputs bigger than this are spooled to a temporary file


def check_pt2(path: str | IO[bytes], *, max_inflated: int = MAX_INFLATED) -> None:
    """Refuse a .pt2 file that ``torch.export.load`` could not load without running its code.

    Also refuses a damaged archive (CRC, sizes) and one whose compressed members would inflate
    past ``max_inflated`` bytes; every member is streamed within its declared size, so the
    check holds a few MB of memory whatever the archive claims.

    Raises ModelError with a message for humans; returns None when the archive only holds
    JSON, raw tensor bytes and tensor-only pickles.
    """
    try:
        archive = open_zip(path, _WHERE)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelError(
            "The file is not a valid .pt2 archive (it may be truncated or corrupt)."
        ) from exc
    with archive:
        check_pt2_archive(archive, max_inflated=max_inflated)


def check_pt2_archive(archive: zipfile.ZipFile, *, max_inflated: int = MAX_INFLATED) -> None:
    """``check_pt2`` for an archive that is already open."""
    try:
        _check_archive(archive, max_inflated)
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, UnicodeDecodeError) as exc:
        # KeyError/ValueError: missing member or malformed JSON; both mean a corrupt file.
        raise ModelError(f"The .pt2 archive is corrupt: {exc}.") from exc


def _check_archive(archive: zipfile.ZipFile, max_inflated: int) -> None:
    names = archive.namelist()
    if not names:
        raise ModelError("The .pt2 archive is empty.")
    if len(set(names)) != len(names):
        # Zip readers disagree on which duplicate wins: what we check must be what torch loads.
        raise ModelError("The .pt2 archive contains duplicate entries.")
    # Before anything is inflated: what each member and all of them would inflate to.
    check_declared_sizes(archive, _WHERE, max_inflated)
    root = names[0].split("/", 1)[0]
    if any("/" not in n or n.split("/", 1)[0] != root for n in names):
        raise ModelError(
            "The .pt2 archive does not have the layout written by torch.export.save "
            "(older formats are not supported; re-save it with a recent PyTorch)."
        )
    relative = {n.split("/", 1)[1]: n for n in names}
    for rel in relative:
        if not rel or rel.endswith("/"):
            continue  # directory entries written by some zip tools
        if not any(p.fullmatch(rel) for p in _ALLOWED_MEMBERS):
            raise ModelError(_refusal_for(rel))
    if "archive_version" not in relative or not any(r.startswith("models/") for r in relative):
        raise ModelError("The .pt2 archive has no exported program in it.")
    # One pass over every member, each streamed within its declared size with its CRC
    # checked; only JSON (size-capped) is held in memory whole.
    for rel, name in relative.items():
        info = archive.getinfo(name)
        if rel.endswith("_config.json"):
            _check_payload_config(rel, _read_json(archive, info))
        elif rel.startswith("models/"):
            _check_expressions(_read_json(archive, info))
        elif rel.startswith("data/sample_inputs/"):
            _check_torch_save(archive, info, max_inflated)
        else:
            for _chunk in iter_member(archive, info, _WHERE):
                pass


def _refusal_for(rel: str) -> str:
    if rel.startswith("data/aotinductor/"):
        return "The .pt2 archive contains compiled AOTInductor code, which is not accepted."
    if rel.startswith(("data/weights/", "data/constants/")) and rel.endswith(".pt"):
        return (
            "The .pt2 archive stores weights in the legacy pickle format; re-save it with "
            "torch.export.save from a recent PyTorch."
        )
    return f"The .pt2 archive contains an unexpected entry {rel!r}."


def _read_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    if info.file_size > _MAX_JSON_BYTES:
        raise ModelError("The .pt2 archive contains an unreasonably large JSON document.")
    return json.loads(read_member(archive, info, _WHERE).decode("utf-8"))


def _check_payload_config(rel: str, config: Any) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelError(f"The .pt2 archive has a malformed {rel}.")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise ModelError(f"The .pt2 archive has a malformed {rel}.")
        if meta.get("use_pickle"):
            raise ModelError(
                f"The .pt2 archive stores {fqn!r} as a pickled object (a tensor subclass or "
                "custom object); only plain tensors are accepted."
            )
        path_name = str(meta.get("path_name", ""))
        if not re.fullmatch(r"(weight|tensor)_\d+", path_name):
            raise ModelError(
                f"The .pt2 archive stores {fqn!r} as a custom object; only plain tensors are "
                "accepted."
            )


def _iter_expr_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr_str":
                yield item if isinstance(item, str) else repr(item)
            else:
                yield from _iter_expr_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _iter_expr_strings(item)


def _check_expressions(document: Any) -> None:
    for expr in _iter_expr_strings(document):
        if not is_safe_sympy_expression(expr):
            raise ModelError(
                "The .pt2 archive contains a symbolic shape expression that is not accepted."
            )


def is_safe_sympy_expression(expr: str) -> bool:
    """True if ``sympy.sympify(expr)`` can only build sympy objects from whitelisted names.

    The expression may contain whitelisted names, shape symbols like ``s0``, numbers,
    quoted symbol names and arithmetic/comparison operators. Attribute access, subscripts,
    lambdas and every other name are rejected, so ``eval`` inside sympify cannot reach
    anything dangerous.
    """
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        match = _EXPR_TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            return False
        name = match.group("name")
        if name is not None and name not in _SAFE_SYMPY_NAMES and not _SYMBOL_NAME.fullmatch(name):
            return False
        string = match.group("string")
        if string is not None and not _SYMBOL_NAME.fullmatch(string.strip("'")):
            return False
        pos = match.end()
    return True


def _check_torch_save(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_inflated: int) -> None:
    # The nested torch.save archive needs a seekable file: spooled, never read whole into memory.
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as nested:
        for chunk in iter_member(archive, info, _WHERE):
            nested.write(chunk)
        nested.seek(0)
        scan_torch_zip(nested, where="The .pt2 archive's example inputs", max_inflated=max_inflated)
