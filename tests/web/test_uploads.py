"""Uploads through the API: good files are stored and hashed; bad ones get a clear 4xx and
leave no rows and no files behind. Malicious pickles are refused without being run."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import pytest

from tests.conftest import export_bytes, safetensors_bytes, stored_files, torch_bytes, upload
from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint

pytestmark = pytest.mark.django_db


def nothing_stored(settings) -> bool:
    return (
        not Architecture.objects.exists()
        and not Checkpoint.objects.exists()
        and stored_files(settings.MEDIA_ROOT) == []
    )


class WritesAFile:
    """A pickle payload that, if ever unpickled, writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        code = f"open({str(self.marker)!r}, 'w').write('pwned')"
        return (exec, (code,))


@pytest.fixture
def weights():
    import torch

    return {"fc.weight": torch.randn(4, 3), "fc.bias": torch.zeros(4)}


# --- checkpoints ------------------------------------------------------------------------------


def test_a_safetensors_checkpoint_is_stored_with_its_tensor_list(api, weights, settings):
    content = safetensors_bytes(weights)
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["format"] == "safetensors" and body["num_tensors"] == 2
    assert body["num_elements"] == 16
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert {t["name"] for t in body["tensors"]} == {"fc.weight", "fc.bias"}
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_a_weights_only_torch_checkpoint_is_accepted(api, weights):
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.pt", torch_bytes(weights))})
    assert response.status_code == 201, response.json()
    assert response.json()["format"] == "torch" and response.json()["num_tensors"] == 2


def test_a_state_dict_of_a_real_model_is_accepted(api):
    from workers.zoo.build import build_model

    state = build_model("cnn", {}).state_dict()
    response = api.post("/api/v1/checkpoints/", {"file": upload("cnn.pth", torch_bytes(state))})
    assert response.status_code == 201, response.json()
    assert response.json()["num_tensors"] == len(state)


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_is_refused_and_never_run(api, settings, tmp_path, protocol):
    marker = tmp_path / "pwned.txt"
    payload = torch_bytes({"weight": WritesAFile(marker)}, pickle_protocol=protocol)
    response = api.post("/api/v1/checkpoints/", {"file": upload("evil.pt", payload)})
    assert response.status_code == 400
    assert "builtins.exec" in response.json()["detail"]
    assert not marker.exists()
    assert nothing_stored(settings)


def test_a_plain_pickle_named_pt_is_refused_and_never_run(api, settings, tmp_path):
    marker = tmp_path / "pwned.txt"
    payload = pickle.dumps({"weight": WritesAFile(marker)})
    response = api.post("/api/v1/checkpoints/", {"file": upload("evil.pth", payload)})
    assert response.status_code == 400
    assert "not a torch zip archive" in response.json()["detail"]
    assert not marker.exists()
    assert nothing_stored(settings)


def test_torch_itself_agrees_the_malicious_file_needs_full_unpickling(tmp_path):
    """A sanity check of the test payload: weights_only loading refuses it too."""
    import torch

    marker = tmp_path / "pwned.txt"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(torch_bytes({"w": WritesAFile(marker)})), weights_only=True)
    assert not marker.exists()


def test_a_damaged_safetensors_file_is_refused(api, weights, settings):
    content = safetensors_bytes(weights)[:-10]
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)})
    assert response.status_code == 400
    assert "truncated" in response.json()["detail"]
    assert nothing_stored(settings)


def test_a_checkpoint_with_the_wrong_extension_is_refused(api, settings):
    response = api.post("/api/v1/checkpoints/", {"file": upload("weights.bin", b"12345")})
    assert response.status_code == 400
    assert "wrong file type" in response.json()["detail"]
    assert nothing_stored(settings)


def test_a_checkpoint_upload_without_a_file_names_the_missing_field(api, settings):
    response = api.post("/api/v1/checkpoints/", {"name": "no file"})
    assert response.status_code == 400
    assert "file" in response.json()
    assert nothing_stored(settings)


def test_an_oversize_upload_is_refused_before_it_is_read(api, settings, weights):
    settings.MAX_UPLOAD_SIZE = 1000
    content = safetensors_bytes({"big": __import__("torch").zeros(1000)})
    response = api.post("/api/v1/checkpoints/", {"file": upload("big.safetensors", content)})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert nothing_stored(settings)


def test_the_same_file_twice_is_reported_as_a_duplicate(api, weights):
    content = safetensors_bytes(weights)
    first = api.post("/api/v1/checkpoints/", {"file": upload("a.safetensors", content)})
    second = api.post("/api/v1/checkpoints/", {"file": upload("b.safetensors", content)})
    assert first.status_code == 201 and second.status_code == 409
    assert "already uploaded" in second.json()["detail"]
    # A script finds the copy it already has by id, without parsing a page address.
    assert second.json()["existing_id"] == first.json()["id"]
    assert Checkpoint.objects.count() == 1


def test_a_checkpoint_can_link_only_to_your_own_architecture(api, outsider, weights):
    from tests.factories import zoo_architecture

    theirs = zoo_architecture(outsider)
    content = safetensors_bytes(weights)
    response = api.post(
        "/api/v1/checkpoints/",
        {"file": upload("w.safetensors", content), "architecture": theirs.pk},
    )
    assert response.status_code == 400 and "architecture" in response.json()


# --- architectures ----------------------------------------------------------------------------


def test_an_export_archive_is_stored(api, tmp_path, settings):
    content = export_bytes(tmp_path)
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("cnn.pt2", content)}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["sha256"] == hashlib.sha256(content).hexdigest()
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_a_truncated_export_archive_is_refused(api, tmp_path, settings):
    content = export_bytes(tmp_path)[:5000]
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("cnn.pt2", content)}
    )
    assert response.status_code == 400
    assert "truncated or damaged" in response.json()["detail"]
    assert nothing_stored(settings)


def test_an_export_archive_carrying_a_malicious_pickle_is_refused(api, tmp_path, settings):
    marker = tmp_path / "pwned.txt"
    original = zipfile.ZipFile(io.BytesIO(export_bytes(tmp_path)))
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("sample_inputs/model.pt"):
                data = torch_bytes({"x": WritesAFile(marker)})
            archive.writestr(info.filename, data)
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("evil.pt2", evil.getvalue())}
    )
    assert response.status_code == 400
    assert not marker.exists()
    assert nothing_stored(settings)


def test_a_zip_that_is_not_an_export_archive_is_refused(api, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("x.pt2", buffer.getvalue())}
    )
    assert response.status_code == 400
    assert "layout written by torch.export.save" in response.json()["detail"]
    assert nothing_stored(settings)


def test_an_architecture_file_with_the_wrong_extension_is_refused(api, settings):
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("model.onnx", b"abc")}
    )
    assert response.status_code == 400 and "wrong file type" in response.json()["detail"]
    assert nothing_stored(settings)


def test_missing_fields_are_named(api, settings):
    assert api.post("/api/v1/architectures/", {}).json().keys() >= {"source"}
    response = api.post("/api/v1/architectures/", {"source": "export"})
    assert response.status_code == 400 and "file" in response.json()
    response = api.post("/api/v1/architectures/", {"source": "zoo"}, format="json")
    assert response.status_code == 400 and "zoo_name" in response.json()
    assert nothing_stored(settings)


def test_a_zoo_model_is_added_by_name_with_arguments(api):
    response = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "resnet18", "zoo_args": {"num_classes": 10}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["zoo_args"] == {"num_classes": 10}


def test_zoo_arguments_may_arrive_as_a_json_string_in_a_form(api):
    response = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "mlp", "zoo_args": '{"hidden": [32]}'},
    )
    assert response.status_code == 201, response.json()


def test_an_unknown_zoo_model_or_argument_is_refused_with_a_reason(api, settings):
    response = api.post(
        "/api/v1/architectures/", {"source": "zoo", "zoo_name": "resnet9000"}, format="json"
    )
    assert response.status_code == 400 and "resnet9000" in response.json()["detail"]
    response = api.post(
        "/api/v1/architectures/",
        {"source": "zoo", "zoo_name": "resnet18", "zoo_args": {"weights": "IMAGENET1K_V1"}},
        format="json",
    )
    assert response.status_code == 400 and "weights" in response.json()["detail"]
    assert nothing_stored(settings)


def test_the_same_zoo_model_twice_is_a_duplicate(api):
    body = {"source": "zoo", "zoo_name": "cnn", "zoo_args": {}}
    assert api.post("/api/v1/architectures/", body, format="json").status_code == 201
    second = api.post("/api/v1/architectures/", body, format="json")
    assert second.status_code == 409 and "already have" in second.json()["detail"]


GOOD_SOURCE = b"""
import torch.nn as nn
INPUT_SHAPE = (4,)
def build_model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
"""


def test_python_sources_are_refused_unless_the_operator_allows_them(api, settings):
    settings.ALLOW_PYTHON_MODELS = False
    response = api.post(
        "/api/v1/architectures/", {"source": "python", "file": upload("m.py", GOOD_SOURCE)}
    )
    assert response.status_code == 403 and "ALLOW_PYTHON_MODELS" in response.json()["detail"]
    assert nothing_stored(settings)


def test_python_sources_are_only_syntax_checked_on_upload(api, settings, tmp_path):
    settings.ALLOW_PYTHON_MODELS = True
    marker = tmp_path / "ran.txt"
    source = GOOD_SOURCE + f"\nopen({str(marker)!r}, 'w').write('ran')\n".encode()
    response = api.post(
        "/api/v1/architectures/", {"source": "python", "file": upload("m.py", source)}
    )
    assert response.status_code == 201, response.json()
    assert not marker.exists()  # uploading never runs the code
    bad = api.post(
        "/api/v1/architectures/", {"source": "python", "file": upload("b.py", b"def (:")}
    )
    assert bad.status_code == 400 and "does not compile" in bad.json()["detail"]
    assert Architecture.objects.count() == 1


def test_a_failed_database_write_leaves_no_file_behind(api, settings, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Architecture, "save", explode)
    content = export_bytes(tmp_path)
    with pytest.raises(RuntimeError):
        api.post("/api/v1/architectures/", {"source": "export", "file": upload("c.pt2", content)})
    assert stored_files(settings.MEDIA_ROOT) == []


def test_a_file_name_longer_than_the_name_column_is_shortened_keeping_its_ends(api, weights):
    long_name = "resnet-" + "x" * 220 + "-final.safetensors"  # under Django's own 255 cut
    response = api.post(
        "/api/v1/checkpoints/", {"file": upload(long_name, safetensors_bytes(weights))}
    )
    assert response.status_code == 201, response.json()
    name = response.json()["name"]
    assert len(name) == 200 and name.startswith("resnet-x") and name.endswith("-final.safetensors")


def test_a_long_data_set_file_name_is_stored_too(api):
    response = api.post("/api/v1/datasets/", {"file": upload("d" * 240 + ".txt", b"hello " * 1000)})
    assert response.status_code == 201, response.json()
    assert len(response.json()["name"]) == 200
