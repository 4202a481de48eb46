"""Checking an uploaded ``.npz`` costs a fixed amount of memory, whatever its size: the web tier
reads the array headers, then checks the values (finite inputs, label range) chunk by chunk as
the members stream, and never loads an array. A compressed data set that inflates to 400 MB
(just under the 512 MB inflation limit) used to cost the web process 500 MB; now its check
stays under 100 MB of peak growth, and it is accepted or refused with the same messages.

The archives are built here in slices of 1,024 rows, so building them costs little memory
either: repeating values deflate about 45 to 1.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import stored_files, upload
from tests.web.test_upload_bombs import MEMORY_BUDGET, MiB, measured
from webapp.datasets.models import Dataset
from workers.errors import ModelError
from workers.safety.datasets import inspect_dataset_file, read_npz, validate_dataset

pytestmark = pytest.mark.django_db

SAMPLES = 102_400
FEATURES = 1_024  # float32: 400 MB of inputs once inflated
ROWS = 1_024


def big_npz(path: Path, *, nan_row: int | None = None, labels: int = 10) -> Path:
    """A compressed ``.npz`` with ``x`` [SAMPLES, FEATURES] float32 (a repeating ramp in
    [0, 1]) and ``y`` = sample index mod ``labels``; ``nan_row`` puts one NaN in that row."""
    ramp = np.tile(np.arange(256, dtype=np.float32) / 255, ROWS * FEATURES // 256)
    block = ramp.reshape(ROWS, FEATURES)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": (SAMPLES, FEATURES)}
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, SAMPLES, ROWS):
                rows = block
                if nan_row is not None and start <= nan_row < start + ROWS:
                    rows = block.copy()
                    rows[nan_row - start, -1] = np.nan
                f.write(rows.tobytes())
        y = io.BytesIO()
        np.lib.format.write_array(y, np.arange(SAMPLES, dtype=np.int64) % labels)
        archive.writestr("y.npy", y.getvalue())
    return path


def post_dataset(api, path: Path):
    return api.post("/api/v1/datasets/", {"file": upload(path.name, path.read_bytes())})


def test_a_compressed_npz_inflating_to_400_mb_is_checked_within_100_mb(api, settings, tmp_path):
    path = big_npz(tmp_path / "big.npz")
    assert path.stat().st_size < 20 * MiB
    with measured() as cost:
        response = post_dataset(api, path)
    assert response.status_code == 201, response.json()
    assert response.json()["summary"] == {
        "samples": SAMPLES,
        "input_shape": [FEATURES],
        "classes": 10,
    }
    assert cost.peak_growth < MEMORY_BUDGET, f"peak memory grew by {cost.peak_growth / MiB:.0f} MB"
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_one_nan_in_the_last_row_of_400_mb_is_found_within_100_mb(api, settings, tmp_path):
    path = big_npz(tmp_path / "nan.npz", nan_row=SAMPLES - 1)
    with measured() as cost:
        response = post_dataset(api, path)
    assert response.status_code == 400
    assert response.json()["detail"] == "The training inputs x contain 1 NaN or infinite values."
    assert cost.peak_growth < MEMORY_BUDGET, f"peak memory grew by {cost.peak_growth / MiB:.0f} MB"
    assert not Dataset.objects.exists() and stored_files(settings.MEDIA_ROOT) == []


# --- the streamed checks say what the loaded ones say -------------------------------------------


def loaded_check(path: Path) -> dict:
    """What the upload check was before it streamed: load the arrays, then validate them."""
    arrays = read_npz(path)
    classes = validate_dataset(arrays["x"], arrays["y"])
    summary = {
        "samples": len(arrays["y"]),
        "input_shape": list(arrays["x"].shape[1:]),
        "classes": classes,
    }
    if "x_test" in arrays:
        if arrays["x_test"].shape[1:] != arrays["x"].shape[1:]:
            raise ModelError(
                f"The test inputs have shape {list(arrays['x_test'].shape[1:])} per sample but "
                f"the training inputs have {list(arrays['x'].shape[1:])}."
            )
        validate_dataset(
            arrays["x_test"], arrays["y_test"], num_classes=classes, min_samples=1, split="test"
        )
        summary["test_samples"] = len(arrays["y_test"])
    return summary


def outcome(check, path: Path) -> tuple[str, object]:
    try:
        return "accepted", check(path)
    except ModelError as error:
        return "refused", str(error)


rng = np.random.default_rng(0)
x_float = rng.normal(size=(300, 3, 5)).astype(np.float32)
labels = np.arange(300) % 7
with_bad = x_float.copy()
with_bad[[3, 150, 299], 1, 2] = [np.nan, np.inf, -np.inf]

CASES = {
    "float32": {"x": x_float, "y": labels},
    "float16 big-endian, int32 labels": {
        "x": x_float.astype(">f2"),
        "y": labels.astype(np.int32),
    },
    "float64 Fortran order": {"x": np.asfortranarray(x_float.astype(np.float64)), "y": labels},
    "uint8 images, uint8 labels": {
        "x": rng.integers(0, 256, (300, 4, 4), dtype=np.uint8),
        "y": labels.astype(np.uint8),
    },
    "three bad values": {"x": with_bad, "y": labels},
    "negative label": {"x": x_float, "y": labels - 1},
    "one class": {"x": x_float, "y": np.full(300, 4)},
    "float labels": {"x": x_float, "y": labels.astype(np.float32)},
    "2-D labels": {"x": x_float, "y": labels.reshape(150, 2)},
    "1-D inputs": {"x": x_float[:, 0, 0], "y": labels},
    "bool inputs": {"x": x_float > 0, "y": labels},
    "complex inputs": {"x": x_float.astype(np.complex64), "y": labels},
    "too few": {"x": x_float[:99], "y": labels[:99]},
    "lengths differ": {"x": x_float, "y": labels[:200]},
    "test split": {"x": x_float, "y": labels, "x_test": x_float[:20], "y_test": labels[:20]},
    "test label past the classes": {
        "x": x_float, "y": labels, "x_test": x_float[:20], "y_test": labels[:20] + 1,
    },
    "test shape differs": {
        "x": x_float, "y": labels, "x_test": x_float[:20, :2], "y_test": labels[:20],
    },
    "test NaN": {"x": x_float, "y": labels, "x_test": with_bad[:10], "y_test": labels[:10]},
    "test split half given": {"x": x_float, "y": labels, "x_test": x_float[:20]},
    "no y": {"x": x_float},
}  # fmt: skip


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_streamed_check_accepts_and_refuses_what_loading_did(case, compressed, tmp_path):
    path = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(path, **CASES[case])
    assert outcome(lambda p: inspect_dataset_file(p, "npz"), path) == outcome(loaded_check, path)


def test_the_streamed_check_reads_items_split_across_chunks(tmp_path, monkeypatch):
    # Chunks of 1 MiB never split a float32 after a 128-byte header; odd-sized ones do.
    from workers.safety import pickles

    monkeypatch.setattr(pickles, "CHUNK", 1_001)
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=with_bad, y=labels)
    assert outcome(lambda p: inspect_dataset_file(p, "npz"), path) == (
        "refused",
        "The training inputs x contain 3 NaN or infinite values.",
    )
    np.savez(path, x=x_float.astype(np.float64), y=labels.astype(np.int16) + 2)
    assert inspect_dataset_file(path, "npz") == {
        "samples": 300,
        "input_shape": [3, 5],
        "classes": 9,
    }
