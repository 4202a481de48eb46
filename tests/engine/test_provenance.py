"""The shared provenance and tensor helpers: digests, machine facts, manifests, CPU states."""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from workers.provenance import (
    machine_info,
    read_manifest,
    sha256_file,
    software_info,
    write_manifest,
)
from workers.tensors import cpu_state_dict


def test_sha256_file_matches_hashlib_across_block_boundaries(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000  # a little over 2 MiB: three read blocks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_software_and_machine_info_name_the_same_facts_as_before():
    software = software_info()
    assert list(software) == ["torch", "python", "threads"]
    assert software["torch"] == torch.__version__
    assert software["threads"] == torch.get_num_threads()
    assert software_info(3)["threads"] == 3
    machine = machine_info(1)
    assert list(machine) == [
        *software,
        "cpu_model",
        "cpu_count",
        "platform",
        "load_average_at_start",
    ]
    assert machine["threads"] == 1
    json.dumps(machine)  # JSON-ready


def test_manifests_round_trip_with_the_callers_indent(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", {"a": [1, 2], "b": "x"}, indent=1)
    assert path.read_text() == json.dumps({"a": [1, 2], "b": "x"}, indent=1) + "\n"
    assert read_manifest(path) == {"a": [1, 2], "b": "x"}


def test_cpu_state_dict_shares_memory_unless_asked_to_copy():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    shared = cpu_state_dict(model)
    assert list(shared) == list(model.state_dict())
    assert shared["0.weight"].data_ptr() == model[0].weight.data_ptr()
    assert not shared["0.weight"].requires_grad
    copied = cpu_state_dict(model, copy=True)
    assert copied["0.weight"].data_ptr() != model[0].weight.data_ptr()
    assert all(torch.equal(copied[k], v) for k, v in shared.items())


def test_cpu_state_dict_copies_hold_only_their_own_elements():
    class View(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("row", torch.arange(12.0).reshape(3, 4)[1])

    state = cpu_state_dict(View(), copy=True)
    assert state["row"].is_contiguous()
    assert state["row"].untyped_storage().nbytes() == 4 * 4
