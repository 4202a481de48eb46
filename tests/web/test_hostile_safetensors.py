"""A .safetensors upload is checked as strictly as the real loader reads it: a header that
lies about its tensors is refused at upload (400, nothing stored), never stored and then found
broken on a worker. Each hostile file is also fed to the real loader, which must refuse it too."""

from __future__ import annotations

import json
import struct

import pytest
from safetensors import SafetensorError
from safetensors.torch import load

from tests.conftest import stored_files, upload


def crafted(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def f32(shape: list, offsets: list) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": offsets}


HOSTILE = {
    "a 1 TB tensor in 8 bytes": (
        {"huge": f32([2**38], [0, 8])}, b"\0" * 8, "claims 274,877,906,944 F32 elements"
    ),
    "a negative dimension": ({"a": f32([-2], [0, 8])}, b"\0" * 8, "non-negative integers"),
    "float offsets": ({"a": f32([2], [0.0, 8.0])}, b"\0" * 8, "malformed data offsets"),
    "a boolean dimension": ({"a": f32([True], [0, 4])}, b"\0" * 4, "malformed shape"),
    "overlapping tensors": (
        {"a": f32([2], [0, 8]), "b": f32([2], [0, 8])}, b"\0" * 8, "overlaps another"
    ),
    "a gap between tensors": ({"a": f32([1], [4, 8])}, b"\0" * 8, "leaves a gap"),
    "bytes no tensor owns": ({"a": f32([1], [0, 4])}, b"\0" * 8, "no tensor accounts for"),
    "three offsets": ({"a": f32([1], [0, 4, 8])}, b"\0" * 8, "malformed data offsets"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_safetensors_header_that_lies_is_refused_like_the_real_loader_refuses_it(
    api, settings, case
):
    header, data, reason = HOSTILE[case]
    content = crafted(header, data)
    with pytest.raises(SafetensorError):
        load(content)
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)})
    assert response.status_code == 400, response.json()
    assert reason in response.json()["detail"]
    assert stored_files(settings.MEDIA_ROOT) == []


def test_an_empty_tensor_beside_a_real_one_is_accepted_as_the_loader_accepts_it(api):
    content = crafted({"empty": f32([0, 3], [0, 0]), "w": f32([2], [0, 8])}, b"\0" * 8)
    assert set(load(content)) == {"empty", "w"}
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)})
    assert response.status_code == 201, response.json()
    assert response.json()["num_tensors"] == 2
