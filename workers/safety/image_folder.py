"""Checks of image-folder zips (class folders of PNG or JPEG images), torch-free and Pillow-free.

The layout people have: ``<class>/<image>.png|jpg|jpeg``, optionally under one top folder, and
optionally split as ``train/<class>/…`` and ``test/<class>/…``. Without split folders a fixed
10% of every class (at least one image, from classes of two or more) is held out for testing,
chosen by name, so the web tier and the worker agree on the split without sharing state.

Why no pixels are decoded here: the web tier checks an upload in the request, and decoding
tens of thousands of images there would take minutes. What can be refused without decoding is
refused here, with the file named: the archive (declared sizes against the inflation budget,
every member streamed once within its declared size, CRC checked; no encryption, no
absolute paths, no ``..``, no backslashes, no symlinks, a bounded number of members), the
layout (class folders, nesting, split folders, at least two classes, at least one training
image per class), and each image's format by its magic bytes and its size and channels from
its header (PNG ``IHDR``, JPEG frame header), so a decompression bomb is refused by the
numbers it declares before anything decodes it. The worker (``workers.data.image_folder``)
runs the same plan, then decodes with Pillow and refuses an image whose decoded size differs
from its header, naming it.

The rules a data set must meet, stated once: every image becomes the most common size among
the images (others are stretched to it, said so in the summary); all grey images give one
channel, any colour image gives three (grey images are then converted, alpha is dropped, and
the summary counts them).
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workers.errors import ModelError
from workers.safety.pickles import (
    MAX_INFLATED,
    ArchiveRefused,
    check_declared_sizes,
    human_size,
    iter_member,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGES = 60_000  # CIFAR-10 as a folder (50k + 10k) fits
MAX_MEMBERS = MAX_IMAGES + 10_000  # room for folder entries and macOS leftovers
MAX_CLASSES = 1_000
MAX_IMAGE_PIXELS = 4096 * 4096  # per image, as its header declares it
MAX_TARGET_PIXELS = 512 * 512  # the size every image is brought to
MAX_TENSOR_BYTES = 2 * 1024**3  # the decoded set as float32 [N, C, H, W]
HEADER_BYTES = 1 << 20  # how far into a JPEG its frame header may sit (after EXIF, ICC …)
TEST_FRACTION = 0.1
EXAMPLES_PER_CLASS = 4  # thumbnails on the data set's page, for the first EXAMPLE_CLASSES
EXAMPLE_CLASSES = 50
SPLIT_FOLDERS = ("train", "test")
WHERE = "The zip"
# What archivers add that is no data: macOS resource forks and Finder files, Windows thumbnails.
_JUNK_FOLDERS = ("__MACOSX",)
_JUNK_FILES = ("Thumbs.db", "desktop.ini")
# JPEG start-of-frame markers (baseline, progressive, lossless …); C4, C8 and CC are not frames.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Split = Literal["train", "test"]


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: format, size and channels (1 grey, 3 colour)."""

    kind: Literal["png", "jpeg"]
    width: int
    height: int
    channels: int
    alpha: bool = False


@dataclass(frozen=True)
class ImageEntry:
    """One image of the set: its archive member, class id, split and header."""

    member: str
    label: int
    split: Split
    header: ImageHeader


@dataclass
class ImageFolderPlan:
    """An image-folder zip, checked: classes, every image with its split, the common shape."""

    classes: list[str]
    entries: list[ImageEntry]
    channels: int
    height: int
    width: int
    split_from: Literal["folders", "held out"]
    counts: dict[str, list[int]] = field(default_factory=dict)  # per split, per class

    @property
    def input_shape(self) -> list[int]:
        """One example's shape once loaded: [channels, height, width]."""
        return [self.channels, self.height, self.width]

    def split(self, split: Split) -> list[ImageEntry]:
        """The images of one split, in archive-name order."""
        return [e for e in self.entries if e.split == split]

    def summary(self) -> dict[str, Any]:
        """The facts stored with the data set (the keys of an ``.npz`` summary, and more)."""
        size = (self.width, self.height)
        resized = sum(1 for e in self.entries if (e.header.width, e.header.height) != size)
        converted = sum(1 for e in self.entries if e.header.channels != self.channels)
        alpha = sum(1 for e in self.entries if e.header.alpha)
        return {
            "samples": len(self.split("train")),
            "test_samples": len(self.split("test")),
            "input_shape": self.input_shape,
            "classes": len(self.classes),
            "class_names": self.classes,
            "class_counts": self.counts,
            "test_split": "test/ folder" if self.split_from == "folders" else "10% held out",
            "resized": resized,
            "converted": converted,
            "alpha_dropped": alpha,
            "formats": dict(sorted(Counter(e.header.kind for e in self.entries).items())),
            "examples": self.examples(),
        }

    def examples(self, per_class: int = EXAMPLES_PER_CLASS) -> list[list[str]]:
        """The first few training images' member names of each of the first classes (for
        thumbnails on the data set's page)."""
        out: list[list[str]] = [[] for _ in self.classes[:EXAMPLE_CLASSES]]
        for entry in self.entries:
            if entry.split == "train" and entry.label < len(out):
                if len(out[entry.label]) < per_class:
                    out[entry.label].append(entry.member)
        return out


# --- image headers ---------------------------------------------------------------------------


def read_header(data: bytes, name: str) -> ImageHeader:
    """Format, size and channels of a PNG or JPEG from its first bytes (its magic decides).

    Raises ``ModelError`` naming ``name`` for anything else, a damaged header, 16-bit or
    12-bit samples, or more than ``MAX_IMAGE_PIXELS`` pixels.
    """
    if data.startswith(_PNG_SIGNATURE):
        header = _png_header(data, name)
    elif data.startswith(b"\xff\xd8\xff"):
        header = _jpeg_header(data, name)
    else:
        raise ModelError(
            f"{_q(name)} is not a PNG or JPEG image (its first bytes are neither); only PNG "
            "and JPEG images are accepted."
        )
    if header.width < 1 or header.height < 1:
        raise ModelError(f"{_q(name)} declares an empty image ({header.width}×{header.height}).")
    if header.width * header.height > MAX_IMAGE_PIXELS:
        raise ModelError(
            f"{_q(name)} declares {header.width:,}×{header.height:,} pixels; at most "
            f"{MAX_IMAGE_PIXELS:,} pixels per image are accepted (shrink it first)."
        )
    return header


def _png_header(data: bytes, name: str) -> ImageHeader:
    # The first chunk must be IHDR: width, height (big-endian uint32), bit depth, colour type.
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise ModelError(f"{_q(name)} is a damaged PNG (no IHDR header).")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    if colour not in (0, 2, 3, 4, 6):
        raise ModelError(f"{_q(name)} is a damaged PNG (colour type {colour}).")
    if depth == 16:
        raise ModelError(f"{_q(name)} has 16-bit samples; save it with 8 bits per sample.")
    # 0 grey, 4 grey + alpha; 2 RGB, 6 RGBA, 3 palette (colours, possibly with transparency).
    channels = 1 if colour in (0, 4) else 3
    return ImageHeader("png", width, height, channels, alpha=colour in (4, 6))


def _jpeg_header(data: bytes, name: str) -> ImageHeader:
    # Walk the marker segments after SOI until a start-of-frame: precision, height, width,
    # number of components. Segments before it (EXIF, ICC profiles, tables) are skipped.
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break
        if marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                break
            precision = data[pos + 4]
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            components = data[pos + 9]
            if precision != 8:
                raise ModelError(
                    f"{_q(name)} has {precision}-bit samples; save it as an 8-bit JPEG."
                )
            if components not in (1, 3, 4):
                raise ModelError(f"{_q(name)} is a damaged JPEG ({components} components).")
            return ImageHeader("jpeg", width, height, 1 if components == 1 else 3)
        pos += 2 + length
    raise ModelError(f"{_q(name)} is a damaged JPEG (no frame header in its first bytes).")


# --- the archive -----------------------------------------------------------------------------


def _q(name: str) -> str:
    # A member name as messages show it: quoted, long ones cut in the middle.
    return repr(name if len(name) <= 100 else name[:60] + "…" + name[-39:])


def open_image_zip(path: str | Path) -> zipfile.ZipFile:
    """The archive, after its end record was read: more than ``MAX_MEMBERS`` entries are refused
    before the central directory is parsed (each entry costs a Python object)."""
    with open(path, "rb") as handle:
        end = zipfile._EndRecData(handle)  # noqa: SLF001 - the parser ZipFile itself runs
        if end is None:
            raise ModelError("The file is not a readable zip archive.")
        entries = end[zipfile._ECD_ENTRIES_TOTAL]  # noqa: SLF001
        if entries > MAX_MEMBERS:
            raise ArchiveRefused(
                f"{WHERE} has {entries:,} entries; at most {MAX_MEMBERS:,} are accepted "
                f"({MAX_IMAGES:,} images)."
            )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ModelError("The file is not a readable zip archive.") from None


_DRIVE = re.compile(r"^[A-Za-z]:")


def check_name(info: zipfile.ZipInfo) -> None:
    """Refuse a member name that could point outside a folder, or a symlink."""
    name = info.filename
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveRefused(f"{WHERE} member {_q(name)} has an absolute path.")
    if "\\" in name:
        raise ArchiveRefused(
            f"{WHERE} member {_q(name)} uses backslashes; zip it with forward slashes."
        )
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise ArchiveRefused(f"{WHERE} member {_q(name)} contains '..'.")
    if any(part in ("", ".") for part in parts):
        raise ArchiveRefused(f"{WHERE} member {_q(name)} has an empty folder name.")
    if any(ord(ch) < 32 for ch in name):
        raise ArchiveRefused(f"{WHERE} member {_q(name)} has control characters in its name.")
    if len(name) > 1_000:
        raise ArchiveRefused(f"{WHERE} member {_q(name)} has a name over 1,000 characters.")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise ArchiveRefused(f"{WHERE} member {_q(name)} is a symbolic link; that is refused.")


def _is_junk(parts: list[str]) -> bool:
    # Finder and Explorer leftovers are skipped, not refused: people zip on those systems.
    return parts[0] in _JUNK_FOLDERS or parts[-1].startswith(".") or parts[-1] in _JUNK_FILES


def _layout(names: list[str], folders: list[str]) -> tuple[list[tuple[str, Split, str]], bool]:
    # Each image file as (member, split, class), and whether split folders gave the test split.
    # ``folders`` are the archive's folder entries, to find class folders left empty.
    parts = {name: name.split("/") for name in names}
    folder_parts = [f.rstrip("/").split("/") for f in folders]
    # One top folder (the folder that was zipped) is stripped: all files under the same first
    # folder, at least three levels deep.
    if parts and all(len(p) >= 3 for p in parts.values()):
        tops = {p[0] for p in parts.values()}
        if len(tops) == 1:
            parts = {name: p[1:] for name, p in parts.items()}
            folder_parts = [f[1:] for f in folder_parts if f[0] in tops and len(f) > 1]
    firsts = {p[0] for p in parts.values()}
    split_folders = firsts & set(SPLIT_FOLDERS)
    if split_folders and firsts - split_folders:
        other = sorted(firsts - split_folders)[0]
        raise ModelError(
            f"{WHERE} mixes split folders (train/, test/) with the class folder {other + '/'!r}: "
            "put every class folder inside train/ and test/, or use no split folders."
        )
    depth = 3 if split_folders else 2
    if split_folders == {"test"}:
        raise ModelError(f"{WHERE} has a test/ folder but no train/ folder.")
    out: list[tuple[str, Split, str]] = []
    for name in sorted(parts):
        p = parts[name]
        if len(p) < depth:
            where = "train/<class>/ or test/<class>/" if split_folders else "a class folder"
            raise ModelError(f"{_q(name)} is not inside {where}: images go in <class>/<image>.")
        if len(p) > depth:
            raise ModelError(
                f"{_q(name)} is nested too deep: images must sit directly in their class "
                "folder (<class>/<image>.png)."
            )
        split: Split = "test" if split_folders and p[0] == "test" else "train"
        out.append((name, split, p[-2]))
    used = {tuple(parts[name][:-1]) for name, _, _ in out}
    for folder in folder_parts:
        if len(folder) == depth - 1 and tuple(folder) not in used and not _is_junk(folder):
            raise ModelError(
                f"The class folder {'/'.join(folder) + '/'!r} holds no images; every class "
                "needs at least one."
            )
    return out, bool(split_folders) and "test" in split_folders


def _members(archive: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, list[str]]]:
    # Every member checked by name; folders and leftovers skipped, every other file yielded.
    for info in archive.infolist():
        check_name(info)
        if info.is_dir():
            continue
        parts = info.filename.split("/")
        if _is_junk(parts):
            continue
        yield info, parts


def _header_of(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> ImageHeader:
    # Stream the member once (size and CRC checked); the header comes from its first bytes.
    head = b""
    for chunk in iter_member(archive, info, WHERE):
        if len(head) < HEADER_BYTES:
            head += chunk[: HEADER_BYTES - len(head)]
    return read_header(head, info.filename)


def plan_image_folder(path: str | Path, *, max_inflated: int = MAX_INFLATED) -> ImageFolderPlan:
    """Check an image-folder zip without decoding it and say how it will be loaded.

    Raises ``ModelError`` (the file named where one is to blame) for: a damaged or crafted
    archive, unsafe member names, files that are not PNG/JPEG images (by magic bytes), a
    wrong layout, fewer than two classes, a class with no training image, a test class that
    has no training images, more than ``MAX_IMAGES`` images or ``MAX_CLASSES`` classes, an
    image over ``MAX_IMAGE_PIXELS`` pixels, and a common size too large to train on.
    """
    with open_image_zip(path) as archive:
        check_declared_sizes(archive, WHERE, max_inflated)
        files: dict[str, zipfile.ZipInfo] = {}
        folders = [i.filename for i in archive.infolist() if i.is_dir()]
        for info, parts in _members(archive):
            if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                raise ModelError(
                    f"{_q(info.filename)} is not a PNG or JPEG image: only .png, .jpg and "
                    ".jpeg files in class folders are accepted."
                )
            files[info.filename] = info
            if len(files) > MAX_IMAGES:
                raise ModelError(f"{WHERE} holds more than {MAX_IMAGES:,} images.")
        if not files:
            raise ModelError(
                f"{WHERE} holds no images: put PNG or JPEG files in one folder per class."
            )
        layout, split_folders = _layout(list(files), folders)
        classes = sorted({cls for _, split, cls in layout if split == "train"})
        test_only = sorted({cls for _, split, cls in layout if split == "test"} - set(classes))
        if test_only:
            raise ModelError(
                f"The test class {test_only[0]!r} has no training images: every class in "
                "test/ needs the same folder, with images, in train/."
            )
        if len(classes) < 2:
            found = f"1 class ({classes[0]!r})" if classes else "no class"
            raise ModelError(
                f"{WHERE} has {found}; at least 2 class folders with images are needed."
            )
        if len(classes) > MAX_CLASSES:
            raise ModelError(
                f"{WHERE} has {len(classes):,} classes; at most {MAX_CLASSES:,} are accepted."
            )
        index = {name: i for i, name in enumerate(classes)}
        headers = {name: _header_of(archive, files[name]) for name, _, _ in layout}
    splits = _assign_splits(layout, split_folders)
    entries = [
        ImageEntry(name, index[cls], splits[name], headers[name]) for name, _, cls in layout
    ]
    return _finish(classes, entries, "folders" if split_folders else "held out")


def _assign_splits(layout: list[tuple[str, Split, str]], split_folders: bool) -> dict[str, Split]:
    # With a test/ folder the folders decide. Without: per class, in name order, every
    # tenth-or-so image (evenly spaced, at least one from classes of two or more) is held out.
    if split_folders:
        return {name: split for name, split, _ in layout}
    by_class: dict[str, list[str]] = {}
    for name, _, cls in layout:
        by_class.setdefault(cls, []).append(name)
    out: dict[str, Split] = {}
    for names in by_class.values():
        n_test = max(1, round(len(names) * TEST_FRACTION)) if len(names) >= 2 else 0
        held = {int((i + 0.5) * len(names) / n_test) for i in range(n_test)}
        for i, name in enumerate(names):
            out[name] = "test" if i in held else "train"
    return out


def _finish(classes: list[str], entries: list[ImageEntry], split_from: Any) -> ImageFolderPlan:
    # The common shape (most common size; all grey → 1 channel, else 3) and its limits.
    if not any(e.split == "test" for e in entries):
        raise ModelError(
            f"{WHERE} leaves no image for testing: add a test/ folder, or more than one image "
            "to a class."
        )
    sizes = Counter((e.header.width, e.header.height) for e in entries)
    # Most common first; a tie goes to the smaller size (cheaper to train, no upscaling).
    width, height = min(sizes, key=lambda s: (-sizes[s], s[0] * s[1], s))
    channels = 3 if any(e.header.channels == 3 for e in entries) else 1
    if width * height > MAX_TARGET_PIXELS:
        raise ModelError(
            f"Most images are {width:,}×{height:,} pixels; at most {MAX_TARGET_PIXELS:,} pixels "
            "(512×512) per image are accepted for training: shrink them first."
        )
    tensor = len(entries) * channels * width * height * 4
    if tensor > MAX_TENSOR_BYTES:
        raise ModelError(
            f"{len(entries):,} images of {channels}×{height}×{width} would take "
            f"{human_size(tensor)} in memory; the limit is {human_size(MAX_TENSOR_BYTES)}."
        )
    counts = {
        split: [sum(1 for e in entries if e.split == split and e.label == i)
                for i in range(len(classes))]
        for split in ("train", "test")
    }  # fmt: skip
    return ImageFolderPlan(classes, entries, channels, height, width, split_from, counts)


def read_example(path_or_file: Any, member: str, max_bytes: int = 16 * 2**20) -> tuple[bytes, str]:
    """The bytes of one image of a stored image-folder zip and its content type, for showing it.

    Only a member that is a PNG or JPEG by its magic bytes, at most ``max_bytes`` large, is
    returned (CRC checked); ``ModelError`` otherwise.
    """
    with zipfile.ZipFile(path_or_file) as archive:
        info = archive.getinfo(member)
        if info.file_size > max_bytes:
            raise ModelError(f"{_q(member)} is too large to show.")
        data = b"".join(iter_member(archive, info, WHERE))
    kind = read_header(data[:HEADER_BYTES], member).kind
    return data, "image/png" if kind == "png" else "image/jpeg"
