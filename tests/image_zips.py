"""Image-folder zips for the tests: real PNG/JPEG files written with Pillow, and crafted ones."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np


def image_bytes(
    kind: str = "png", size: tuple[int, int] = (8, 8), mode: str = "L", value: int = 0
) -> bytes:
    """A real image: ``size`` is (width, height); pixels are a pattern shifted by ``value``."""
    from PIL import Image

    width, height = size
    pattern = (np.arange(width * height).reshape(height, width) * 7 + value * 37) % 256
    grey = pattern.astype(np.uint8)
    if mode == "L":
        image = Image.fromarray(grey, "L")
    else:
        channels = np.stack([grey, 255 - grey, np.full_like(grey, value % 256)], axis=-1)
        image = Image.fromarray(channels, "RGB")
        if mode == "RGBA":
            image = image.convert("RGBA")
    buffer = io.BytesIO()
    image.save(buffer, "PNG" if kind == "png" else "JPEG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    """A zip of ``members`` (deflated); names in ``symlinks`` are stored as symbolic links."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def class_folders(
    classes: dict[str, int], *, top: str = "", kind: str = "png", size: tuple[int, int] = (8, 8),
    mode: str = "L", split: str = "",
) -> dict[str, bytes]:  # fmt: skip
    """Members ``[top/][split/]<class>/<i>.png`` with ``classes[name]`` images per class."""
    prefix = "".join(f"{part}/" for part in (top, split) if part)
    suffix = "png" if kind == "png" else "jpg"
    return {
        f"{prefix}{name}/{i:03d}.{suffix}": image_bytes(kind, size, mode, value=c * 10 + i)
        for c, (name, count) in enumerate(classes.items())
        for i in range(count)
    }


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR chunk declaring ``width`` × ``height`` grey pixels, plus a
    tiny IDAT: what a decompression bomb looks like before anything is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))  # fmt: skip
