"""Uploading data sets to train on: checked on upload, clear 4xx when unusable, owner only."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from tests.conftest import stored_files, upload
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def good_arrays(n: int = 200) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(n, 40)).astype(np.float32), "y": rng.integers(0, 10, n)}


def post(api, name: str, content: bytes):
    return api.post("/api/v1/datasets/", {"file": upload(name, content)})


def test_an_npz_data_set_is_checked_and_summarised(api, settings):
    response = post(api, "seq.npz", npz_bytes(**good_arrays()))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["task"] == "classification"
    assert body["summary"] == {"samples": 200, "input_shape": [40], "classes": 10}
    assert len(stored_files(settings.MEDIA_ROOT)) == 1


def test_a_text_data_set_is_accepted_for_character_models(api):
    text = ("To be, or not to be, that is the question. " * 300).encode()
    response = post(api, "play.txt", text)
    assert response.status_code == 201, response.json()
    assert response.json()["task"] == "char-lm"
    assert response.json()["summary"]["vocabulary"] < 40


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.full((200, 4), np.nan, np.float32), "y": np.zeros(200, int)}, "NaN"),
        ({"x": np.zeros((200, 4), np.float32), "y": np.zeros(150, int)}, "same length"),
        ({"x": np.zeros((50, 4), np.float32), "y": np.arange(50) % 2}, "only 50 samples"),
        ({"x": np.zeros((200, 4), np.float32), "y": np.zeros(200, int)}, "at least 2"),
        ({"x": np.zeros((200, 4), np.float32), "y": np.full(200, -1)}, "must lie in"),
        ({"inputs": np.zeros((200, 4))}, "must contain arrays 'x' and 'y'"),
    ],
)
def test_unusable_arrays_are_refused_with_a_reason(api, settings, arrays, message):
    response = post(api, "bad.npz", npz_bytes(**arrays))
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Dataset.objects.exists() and stored_files(settings.MEDIA_ROOT) == []


def test_an_npz_holding_pickled_objects_is_refused_without_unpickling(api, settings, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    x = np.empty(200, dtype=object)
    x[:] = [Evil()] * 200
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=np.arange(200) % 2)
    response = post(api, "evil.npz", buffer.getvalue())
    assert response.status_code == 400 and "Python objects" in response.json()["detail"]
    assert not marker.exists()
    assert stored_files(settings.MEDIA_ROOT) == []


def test_text_that_is_not_utf8_or_too_short_is_refused(api):
    assert "not UTF-8" in post(api, "x.txt", b"\xff\xfe" + b"\x00\xd8" * 5000).json()["detail"]
    assert "only" in post(api, "x.txt", b"short text").json()["detail"]


def test_a_plain_pickle_named_npz_is_refused(api):
    response = post(api, "x.npz", pickle.dumps({"x": [1, 2]}))
    assert response.status_code == 400 and "not a readable .npz" in response.json()["detail"]


def test_the_same_data_set_twice_is_a_duplicate(api):
    content = npz_bytes(**good_arrays())
    assert post(api, "a.npz", content).status_code == 201
    again = post(api, "b.npz", content)
    assert again.status_code == 409 and "already uploaded" in again.json()["detail"]


def test_data_sets_are_owner_only(api, outsider_api):
    created = post(api, "a.npz", npz_bytes(**good_arrays())).json()
    assert outsider_api.get(f"/api/v1/datasets/{created['id']}/").status_code == 404
    assert outsider_api.delete(f"/api/v1/datasets/{created['id']}/").status_code == 404
    assert outsider_api.get("/api/v1/datasets/").json()["count"] == 0
    assert api.get("/api/v1/datasets/").json()["count"] == 1


def test_built_in_data_sets_and_accelerators_are_listed(api):
    body = api.get("/api/v1/datasets/builtin/").json()
    assert {d["name"] for d in body["datasets"]} >= {"fashion_mnist", "mnist1d", "shakespeare"}
    assert {a["name"] for a in body["accelerators"]} >= {"none", "nino", "wnn"}


def test_the_upload_page_shows_the_reason_and_the_detail_page_the_summary(browser, outsider):
    response = browser.post("/datasets/new/", {"file": upload("x.npz", b"nope")})
    assert response.status_code == 400 and "not a readable .npz" in response.content.decode()
    response = browser.post("/datasets/new/", {"file": upload("a.npz", npz_bytes(**good_arrays()))})
    assert response.status_code == 302
    assert "Samples" in browser.get(response.url).content.decode()
    browser.force_login(outsider)
    assert browser.get(response.url).status_code == 404
