"""Zip bombs and duplicates: an archive of a few MB that would inflate to GBs is refused from
the sizes its headers declare, before anything is inflated; a member whose headers claim
little but whose data inflates to more is stopped as soon as that shows; and a file the owner
already has is answered 409 before it is scanned at all.

The bombs are built here, by hand: 1.5 GB of zeros deflate to about 1.6 MB of identical
blocks, so building one costs a CRC over the zeros and nothing else. Memory is measured as
the growth of the process's peak resident set (reset before the upload where Linux allows it),
so "under 100 MB" means the check never held the inflated data.
"""

from __future__ import annotations

import io
import resource
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import export_bytes, stored_files, torch_bytes, upload
from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db

MiB = 2**20
BOMB = 1536 * MiB  # 1.5 GB of zeros once inflated
MEMORY_BUDGET = 100 * MiB
TIME_BUDGET = 10.0  # seconds; generous, to catch the 20-second scans, not to benchmark


# --- building zips by hand ---------------------------------------------------------------------


@dataclass
class Member:
    """One zip entry as it will be written: ``raw`` is what the archive stores (deflated or
    not), ``size`` the uncompressed size both headers declare, ``crc`` the CRC they declare."""

    name: str
    raw: bytes
    size: int
    crc: int
    method: int = zipfile.ZIP_STORED


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, len(data), zlib.crc32(data))


def deflated(name: str, data: bytes) -> Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(data) + compressor.flush()
    return Member(name, raw, len(data), zlib.crc32(data), zipfile.ZIP_DEFLATED)


def zeros_bomb(name: str, size: int, *, prefix: bytes = b"", declared: int | None = None) -> Member:
    """A deflated member of ``prefix`` and then zeros, ``size`` bytes in all once inflated.

    Blocks ended by a full flush do not refer back across it, so one compressed MiB of zeros
    repeated is a valid deflate stream. ``declared`` makes the headers lie: they then claim
    that many bytes (with the CRC of that many), while the data still inflates to ``size``.
    """
    chunk = bytes(MiB)
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_prefix = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH) if prefix else b""
    blocks = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = blocks.compress(chunk) + blocks.flush(zlib.Z_FULL_FLUSH)
    ending = blocks.flush()
    zeros = size - len(prefix)
    assert zeros % MiB == 0, "whole MiB of zeros after the prefix"
    raw = raw_prefix + block * (zeros // MiB) + ending
    if declared is None:
        crc = zlib.crc32(prefix)
        for _ in range(zeros // MiB):
            crc = zlib.crc32(chunk, crc)
        return Member(name, raw, size, crc, zipfile.ZIP_DEFLATED)
    claimed = (prefix + bytes(max(declared - len(prefix), 0)))[:declared]
    return Member(name, raw, declared, zlib.crc32(claimed), zipfile.ZIP_DEFLATED)


def zip_of(members: list[Member]) -> bytes:
    """The archive: local headers and data, then the central directory; both headers of a
    member declare the same sizes and CRC (no data descriptors)."""
    out = io.BytesIO()
    central = []
    for m in members:
        offset = out.tell()
        name = m.name.encode()
        common = (m.method, 0, 0x21, m.crc, len(m.raw), m.size, len(name))
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *common, 0) + name + m.raw)
        central.append(
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *common, 0, 0, 0, 0, 0, offset)
            + name
        )
    start = out.tell()
    out.write(b"".join(central))
    size = out.tell() - start
    n = len(members)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, size, start, 0))
    return out.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> bytes:
    """A real small torch.export archive (exporting takes seconds; done once here)."""
    return export_bytes(tmp_path_factory.mktemp("export"))


def members_of(archive: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return [stored(info.filename, z.read(info)) for info in z.infolist()]


def root_of(archive: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return z.namelist()[0].split("/", 1)[0]


def small_labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 8)).astype(np.float32), rng.integers(0, 4, 200)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Cost:
    seconds: float = 0.0
    peak_growth: int = 0  # bytes the peak resident set grew by


def _reset_peak() -> None:
    try:  # Linux: "5" resets the peak RSS that getrusage reports to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # the growth measured is then relative to an earlier, higher peak: a lower bound


def _current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def measured() -> Iterator[Cost]:
    cost = Cost()
    _reset_peak()
    before = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _current_rss())
    start = time.perf_counter()
    yield cost
    cost.seconds = time.perf_counter() - start
    cost.peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def nothing_stored(settings) -> bool:
    return (
        not Architecture.objects.exists()
        and not Checkpoint.objects.exists()
        and not Dataset.objects.exists()
        and stored_files(settings.MEDIA_ROOT) == []
    )


def post_architecture(api, name: str, content: bytes):
    return api.post("/api/v1/architectures/", {"source": "export", "file": upload(name, content)})


def post_dataset(api, name: str, content: bytes):
    return api.post("/api/v1/datasets/", {"file": upload(name, content)})


def assert_refused_cheaply(response, cost: Cost, reason: str, settings) -> None:
    assert response.status_code == 400, response.json()
    assert reason in response.json()["detail"]
    assert nothing_stored(settings)
    assert cost.peak_growth < MEMORY_BUDGET, f"peak memory grew by {cost.peak_growth / MiB:.0f} MB"
    assert cost.seconds < TIME_BUDGET, f"took {cost.seconds:.1f} s"


# --- export archives ----------------------------------------------------------------------------


def test_an_export_archive_whose_example_inputs_inflate_to_1_5_gb_is_refused_at_once(
    api, export, settings
):
    root = root_of(export)
    members = [
        zeros_bomb(m.name, BOMB) if m.name.endswith("sample_inputs/model.pt") else m
        for m in members_of(export)
    ]
    content = zip_of(members)
    assert len(content) < 2 * MiB
    with measured() as cost:
        response = post_architecture(api, "bomb.pt2", content)
    assert_refused_cheaply(
        response,
        cost,
        f"The .pt2 archive member '{root}/data/sample_inputs/model.pt' would inflate to "
        "1.5 GB; the limit is 512 MB.",
        settings,
    )


def test_an_export_archive_with_a_huge_extra_weight_member_is_refused_at_once(
    api, export, settings
):
    root = root_of(export)
    content = zip_of([*members_of(export), zeros_bomb(f"{root}/data/weights/weight_99", BOMB)])
    with measured() as cost:
        response = post_architecture(api, "bomb.pt2", content)
    assert_refused_cheaply(
        response,
        cost,
        f"member '{root}/data/weights/weight_99' would inflate to 1.5 GB; the limit is 512 MB.",
        settings,
    )


def test_export_archive_members_that_together_inflate_past_the_limit_are_refused(
    api, export, settings
):
    root = root_of(export)
    extras = [zeros_bomb(f"{root}/extra/part{i}", 200 * MiB) for i in range(3)]
    with measured() as cost:
        response = post_architecture(api, "bomb.pt2", zip_of([*members_of(export), *extras]))
    assert_refused_cheaply(response, cost, "would inflate to more than 512 MB in all", settings)


def test_an_export_archive_member_that_inflates_past_its_declared_size_is_stopped(
    api, export, settings
):
    # Both headers claim 1 KB (with the CRC of 1 KB of zeros, so a reader that stops at the
    # declared size would not notice); the data goes on for 1.5 GB.
    root = root_of(export)
    liar = zeros_bomb(f"{root}/extra/notes", BOMB, declared=1024)
    with measured() as cost:
        response = post_architecture(api, "liar.pt2", zip_of([*members_of(export), liar]))
    assert_refused_cheaply(
        response,
        cost,
        f"member '{root}/extra/notes' inflates to more than the 1 KB its header declares",
        settings,
    )


def test_example_inputs_whose_own_pickle_would_inflate_to_1_5_gb_are_refused(api, export, settings):
    # The bomb one level down: a stored example-inputs archive whose data.pkl is the bomb.
    nested = zip_of([zeros_bomb("model/data.pkl", BOMB)])
    members = [
        stored(m.name, nested) if m.name.endswith("sample_inputs/model.pt") else m
        for m in members_of(export)
    ]
    with measured() as cost:
        response = post_architecture(api, "nested.pt2", zip_of(members))
    assert_refused_cheaply(
        response,
        cost,
        "The .pt2 archive's example inputs member 'model/data.pkl' would inflate to 1.5 GB",
        settings,
    )


def test_a_compressed_export_archive_within_the_limit_is_accepted(api, export, settings):
    content = zip_of([deflated(m.name, m.raw) for m in members_of(export)])
    response = post_architecture(api, "compressed.pt2", content)
    assert response.status_code == 201, response.json()
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_an_export_archive_member_with_a_wrong_crc_is_refused(api, export, settings):
    members = members_of(export)
    members[0].crc ^= 1
    response = post_architecture(api, "damaged.pt2", zip_of(members))
    assert response.status_code == 400
    assert f"member '{members[0].name}' is damaged (CRC mismatch)" in response.json()["detail"]
    assert nothing_stored(settings)


# --- data sets ----------------------------------------------------------------------------------


def test_an_npz_that_inflates_to_1_5_gb_is_refused_at_once(api, settings):
    header = npy_header((BOMB // 4096, 1024))
    x = zeros_bomb("x.npy", len(header) + BOMB, prefix=header)
    _, labels = small_labels()
    content = zip_of([x, stored("y.npy", npy(labels))])
    assert len(content) < 2 * MiB
    with measured() as cost:
        response = post_dataset(api, "bomb.npz", content)
    assert_refused_cheaply(
        response,
        cost,
        "The .npz archive member 'x.npy' would inflate to 1.5 GB; the limit is 512 MB.",
        settings,
    )


def test_an_npz_member_that_inflates_past_its_declared_size_is_stopped(api, settings):
    # x.npy's headers claim a 200x8 float32 array (header + 6,400 bytes, CRC to match); its
    # data inflates to 1.5 GB. numpy alone would read the 6,400 bytes and never notice.
    header = npy_header((200, 8))
    liar = zeros_bomb("x.npy", len(header) + BOMB, prefix=header, declared=len(header) + 6400)
    _, labels = small_labels()
    labels[:2] = [0, 1]
    with measured() as cost:
        response = post_dataset(api, "liar.npz", zip_of([liar, stored("y.npy", npy(labels))]))
    reason = "member 'x.npy' inflates to more than the 6 KB its header declares"
    assert_refused_cheaply(response, cost, reason, settings)


def test_a_compressed_npz_within_the_limit_is_accepted(api, settings):
    x, y = small_labels()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    response = post_dataset(api, "compressed.npz", buffer.getvalue())
    assert response.status_code == 201, response.json()
    assert response.json()["summary"] == {"samples": 200, "input_shape": [8], "classes": 4}


def test_an_npz_array_larger_than_its_member_is_refused_as_damaged(api, settings):
    # The header claims 1.5 GB of floats; the member holds 6,400 bytes.
    header = npy_header((BOMB // 4096, 1024))
    _, labels = small_labels()
    content = zip_of([stored("x.npy", header + bytes(6400)), stored("y.npy", npy(labels))])
    response = post_dataset(api, "short.npz", content)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Array 'x' declares 1,610,612,736 bytes of data but its archive member holds 6,400; "
        "the file is damaged."
    )
    assert nothing_stored(settings)


# --- duplicates are answered before any scan ----------------------------------------------------


def test_a_known_export_archive_is_answered_409_before_it_is_scanned(
    api, outsider_api, export, settings
):
    # Compressed, so that the scan depends on the inflation limit: after the first upload the
    # limit drops below what the archive inflates to. The owner's re-upload is still answered
    # 409, naming the earlier copy, so the scan never ran; someone else's identical upload is
    # scanned, and refused.
    content = zip_of([deflated(m.name, m.raw) for m in members_of(export)])
    first = post_architecture(api, "first.pt2", content)
    assert first.status_code == 201, first.json()
    settings.UPLOAD_MAX_INFLATED = 1024

    again = post_architecture(api, "again.pt2", content)
    assert again.status_code == 409, again.json()
    named = f"'{first.json()['name']}' (architecture {first.json()['id']})"
    assert first.json()["name"].startswith("first.pt2") and named in again.json()["detail"]

    fresh = post_architecture(outsider_api, "again.pt2", content)
    assert fresh.status_code == 400
    assert "the limit is 1 KB" in fresh.json()["detail"]
    assert Architecture.objects.count() == 1


def test_a_known_checkpoint_is_answered_409_before_it_is_scanned(api, outsider_api, settings):
    import torch

    original = torch_bytes({"w": torch.zeros(64, 64)})
    content = zip_of([deflated(m.name, m.raw) for m in members_of(original)])
    first = api.post("/api/v1/checkpoints/", {"file": upload("first.pt", content)})
    assert first.status_code == 201, first.json()
    settings.UPLOAD_MAX_INFLATED = 16

    again = api.post("/api/v1/checkpoints/", {"file": upload("again.pt", content)})
    assert again.status_code == 409, again.json()
    assert f"'first.pt' (checkpoint {first.json()['id']})" in again.json()["detail"]

    fresh = outsider_api.post("/api/v1/checkpoints/", {"file": upload("again.pt", content)})
    assert fresh.status_code == 400
    assert "the limit is 16 bytes" in fresh.json()["detail"]
    assert Checkpoint.objects.count() == 1


def test_a_known_data_set_is_answered_409_before_it_is_scanned(api, outsider_api, settings):
    x, y = small_labels()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    content = buffer.getvalue()
    first = post_dataset(api, "first.npz", content)
    assert first.status_code == 201, first.json()
    settings.UPLOAD_MAX_INFLATED = 1024

    again = post_dataset(api, "again.npz", content)
    assert again.status_code == 409, again.json()
    assert f"'first.npz' (data set {first.json()['id']})" in again.json()["detail"]

    fresh = post_dataset(outsider_api, "again.npz", content)
    assert fresh.status_code == 400
    assert "the limit is 1 KB" in fresh.json()["detail"]
    assert Dataset.objects.count() == 1
