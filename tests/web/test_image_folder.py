"""Uploading image-folder zips: class folders of PNG/JPEG checked on upload (shape, classes,
splits), bombs and crafted archives refused with a sentence naming the file, nothing stored
then, and only the owner sees the data set and its thumbnails."""

from __future__ import annotations

import pytest

from tests.conftest import stored_files, upload
from tests.image_zips import class_folders, image_bytes, png_header_only, zip_bytes
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db


def post(api, content: bytes, name: str = "pets.zip"):
    return api.post("/api/v1/datasets/", {"file": upload(name, content)})


def test_a_person_who_uploads_class_folders_sees_the_shape_classes_and_splits(api, settings):
    response = post(api, zip_bytes(class_folders({"cat": 10, "dog": 20}, top="pets")))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["format"] == "images" and body["task"] == "classification"
    summary = body["summary"]
    assert summary["input_shape"] == [1, 8, 8]
    assert summary["classes"] == 2 and summary["class_names"] == ["cat", "dog"]
    # 10% of each class held out, chosen by name: 1 of 10 cats, 2 of 20 dogs.
    assert summary["class_counts"] == {"train": [9, 18], "test": [1, 2]}
    assert summary["samples"] == 27 and summary["test_samples"] == 3
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_train_and_test_folders_give_the_split_and_colour_wins_over_grey(api):
    members = class_folders({"a": 3, "b": 3}, split="train", kind="jpeg", mode="RGB")
    members |= class_folders({"a": 2, "b": 1}, split="test")  # grey PNGs
    members["train/b/odd-size.png"] = image_bytes("png", (20, 10), "RGBA")
    response = post(api, zip_bytes(members))
    assert response.status_code == 201, response.json()
    summary = response.json()["summary"]
    assert summary["input_shape"] == [3, 8, 8]  # colour: 3 channels; the most common size
    assert summary["class_counts"] == {"train": [3, 4], "test": [2, 1]}
    assert summary["test_split"] == "test/ folder"
    assert summary["resized"] == 1 and summary["converted"] == 3 and summary["alpha_dropped"] == 1
    assert summary["formats"] == {"jpeg": 6, "png": 4}


def test_the_format_is_decided_by_magic_bytes_not_the_file_name(api):
    members = class_folders({"a": 2, "b": 2})
    members["a/really-a-jpeg.png"] = image_bytes("jpeg", (8, 8))
    response = post(api, zip_bytes(members))
    assert response.status_code == 201, response.json()
    assert response.json()["summary"]["formats"] == {"jpeg": 1, "png": 4}


def test_macos_and_windows_leftovers_are_skipped(api):
    members = class_folders({"a": 2, "b": 2}, top="set")
    members |= {"__MACOSX/set/a/._000.png": b"\0\5\x16\7", "set/.DS_Store": b"x",
                "set/b/Thumbs.db": b"x"}  # fmt: skip
    response = post(api, zip_bytes(members))
    assert response.status_code == 201, response.json()
    assert response.json()["summary"]["classes"] == 2


def _refused(members: dict[str, bytes], **kwargs) -> bytes:
    return zip_bytes(members, **kwargs)


GOOD = class_folders({"cat": 3, "dog": 3})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_refused(GOOD | {"cat/bomb.png": png_header_only(100_000, 100_000)}),
         "'cat/bomb.png' declares 100,000×100,000 pixels; at most 16,777,216"),
        (_refused(GOOD | {"cat/notes.txt": b"hello"}), "'cat/notes.txt' is not a PNG or JPEG"),
        (_refused(GOOD | {"cat/fake.png": b"GIF89a" + b"\0" * 40}),
         "'cat/fake.png' is not a PNG or JPEG image (its first bytes are neither)"),
        (_refused(GOOD | {"cat/deep/x.png": image_bytes()}), "'cat/deep/x.png' is nested too deep"),
        (_refused(GOOD | {"stray.png": image_bytes()}), "'stray.png' is not inside a class folder"),
        (_refused(GOOD | {"../evil/x.png": image_bytes()}), "contains '..'"),
        (_refused(GOOD | {"/etc/x.png": image_bytes()}), "has an absolute path"),
        (_refused(GOOD | {"cat\\x.png": image_bytes()}), "uses backslashes"),
        (_refused(GOOD | {"cat/link.png": b"/etc/passwd"}, symlinks=("cat/link.png",)),
         "'cat/link.png' is a symbolic link"),
        (_refused(class_folders({"cat": 5})), "has 1 class ('cat'); at least 2 class folders"),
        (_refused(GOOD | {"bird/": b""}), "The class folder 'bird/' holds no images"),
        (_refused(class_folders({"a": 2, "b": 2}, split="train")
                  | class_folders({"a": 1, "c": 1}, split="test")),
         "The test class 'c' has no training images"),
        (_refused(class_folders({"a": 2, "b": 2}, split="train") | {"c/x.png": image_bytes()}),
         "mixes split folders"),
        (_refused(class_folders({"a": 1, "b": 1})), "leaves no image for testing"),
        (_refused(class_folders({"a": 2, "b": 2}, size=(600, 600))),
         "Most images are 600×600 pixels; at most 262,144"),
        (_refused({}), "holds no images"),
        (b"PK\x05\x06" + b"\0" * 18, "holds no images"),
        (b"not a zip at all", "not a readable zip archive"),
    ],
)
def test_unusable_or_hostile_image_zips_are_refused_with_a_sentence_and_nothing_stored(
    api, settings, content, message
):
    response = post(api, content)
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert not Dataset.objects.exists() and stored_files(settings.MEDIA_ROOT) == []


def test_too_many_members_are_refused_before_the_directory_is_read(api, settings, monkeypatch):
    import workers.safety.image_folder as image_folder

    monkeypatch.setattr(image_folder, "MAX_MEMBERS", 5)
    response = post(api, zip_bytes(GOOD))
    assert response.status_code == 400
    assert "has 6 entries; at most 5 are accepted" in response.json()["detail"]
    assert stored_files(settings.MEDIA_ROOT) == []


def test_a_member_inflating_past_the_budget_is_refused_before_inflating(api, settings):
    settings.UPLOAD_MAX_INFLATED = 1024
    members = GOOD | {"cat/big.png": image_bytes("png", (64, 64))}
    response = post(api, zip_bytes(members | {"dog/pad.png": png_header_only(8, 8) + b"\0" * 4096}))
    assert response.status_code == 400
    assert "would inflate to" in response.json()["detail"]
    assert stored_files(settings.MEDIA_ROOT) == []


def test_the_upload_page_explains_the_layout_and_names_the_refused_file(browser, settings):
    page = browser.get("/datasets/new/").content.decode()
    assert "Image folders" in page and "train/" in page and "most common size" in page
    content = zip_bytes(GOOD | {"dog/readme.md": b"# hi"})
    response = browser.post("/datasets/new/", {"file": upload("pets.zip", content)})
    assert response.status_code == 400
    assert "&#x27;dog/readme.md&#x27; is not a PNG or JPEG image" in response.content.decode()
    assert stored_files(settings.MEDIA_ROOT) == []


def test_the_owner_sees_classes_counts_and_thumbnails_and_an_outsider_sees_nothing(
    api, client, owner, outsider, outsider_api
):
    body = post(api, zip_bytes(class_folders({"cat": 3, "dog": 4}, mode="RGB"))).json()
    client.force_login(owner)
    page = client.get(f"/datasets/{body['id']}/").content.decode()
    assert "3×8×8" in page and "cat" in page and "dog" in page
    assert f"/datasets/{body['id']}/examples/1/0/" in page
    thumb = client.get(f"/datasets/{body['id']}/examples/1/0/")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    assert thumb.content.startswith(b"\x89PNG") and thumb["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/datasets/{body['id']}/examples/5/0/").status_code == 404
    assert outsider_api.get(f"/api/v1/datasets/{body['id']}/").status_code == 404
    client.force_login(outsider)
    assert client.get(f"/datasets/{body['id']}/").status_code == 404
    assert client.get(f"/datasets/{body['id']}/examples/0/0/").status_code == 404
