"""Loading an uploaded image-folder zip (class folders of PNG/JPEG) into ``ClassificationData``.

The archive is checked and planned first by ``workers.safety.image_folder.plan_image_folder``
(the web tier ran the same plan on upload), so the split, the classes and the common shape are
the ones the data set's page shows. Then every image is decoded with Pillow, after its header
said its size is within limits; an image whose decoded size differs from its header, or that
does not decode, is refused by name.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from workers.data.datasets import ClassificationData
from workers.errors import ModelError
from workers.safety.image_folder import (
    WHERE,
    ImageEntry,
    ImageFolderPlan,
    open_image_zip,
    plan_image_folder,
)
from workers.safety.pickles import MAX_INFLATED, read_member


def decode_image(data: bytes, entry: ImageEntry, plan: ImageFolderPlan) -> np.ndarray:
    """One image as uint8 [channels, height, width] in the plan's shape (converted, resized)."""
    from PIL import Image

    name = entry.member
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning; the header was already held to our pixel limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.size != (entry.header.width, entry.header.height):
                raise ModelError(
                    f"{name!r} decodes to {image.size[0]}×{image.size[1]} pixels but its header "
                    f"says {entry.header.width}×{entry.header.height}; the file is damaged."
                )
            image.load()
            image = image.convert("L" if plan.channels == 1 else "RGB")
            if image.size != (plan.width, plan.height):
                image = image.resize((plan.width, plan.height), Image.Resampling.BILINEAR)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - OSError, SyntaxError, ValueError on bad data
        raise ModelError(f"{name!r} could not be decoded as an image ({error}).") from None
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode_split(
    archive: zipfile.ZipFile, plan: ImageFolderPlan, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    entries = [e for e in plan.entries if e.split == split]
    x = np.empty((len(entries), plan.channels, plan.height, plan.width), dtype=np.uint8)
    for i, entry in enumerate(entries):
        data = read_member(archive, archive.getinfo(entry.member), WHERE)
        x[i] = decode_image(data, entry, plan)
    y = torch.tensor([e.label for e in entries], dtype=torch.int64)
    # Scaled to [0, 1] as the 8-bit images of an uploaded .npz are.
    return torch.from_numpy(x).float().div_(255.0), y


def load_image_folder(
    path: str | Path, *, name: str = "upload", max_inflated: int = MAX_INFLATED
) -> ClassificationData:
    """An image-folder zip as a classification set: [N, C, H, W] float32 in [0, 1], int64 labels.

    Class ids follow the class folders' names in sorted order; the split and the shape are the
    plan's (see ``workers.safety.image_folder``). Raises ``ModelError`` for anything unusable.
    """
    plan = plan_image_folder(path, max_inflated=max_inflated)
    with open_image_zip(path) as archive:
        x_train, y_train = _decode_split(archive, plan, "train")
        x_test, y_test = _decode_split(archive, plan, "test")
    return ClassificationData(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(plan.classes),
    )
