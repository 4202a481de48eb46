"""Files in an S3-compatible bucket (moto's real HTTP server), and the /readyz probe.

The web side runs in this process with ``STORAGES["default"]`` on the bucket; the end-to-end
test starts a second Celery worker with ``STORAGE_URL`` in its environment and an empty storage
folder of its own, so the database, the broker and the bucket are all it shares with the web.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from tests.conftest import export_bytes, safetensors_bytes, stored_files, upload
from tests.worker_process import WorkerProcess
from webapp.env import parse_object_store

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("storages.backends.s3")

BUCKET = "weightspace-test"
ACCESS, SECRET = "test-access", "test-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """moto's S3 server on 127.0.0.1, stoppable and restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = (
            f"s3://{ACCESS}:{SECRET}@127.0.0.1:{self.port}/{BUCKET}?region=us-east-1&secure=0"
        )
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = moto_server.ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=BUCKET)
        return [item["Key"] for item in listing.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3, settings, tmp_path):
    """This process's default storage on the bucket, as STORAGE_URL would configure it; the
    storage folder is an empty one of this test's, so 'nothing on disk' can be checked."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": parse_object_store("STORAGE_URL", s3.url).storage_config(),
    }
    return s3


@pytest.mark.django_db
def test_an_upload_lands_in_the_bucket_and_not_on_disk_and_downloads_back(
    api, outsider_api, s3_storage, settings
):
    from django.core.files.storage import default_storage
    from storages.backends.s3 import S3Storage

    assert isinstance(default_storage, S3Storage)
    content = safetensors_bytes({"w": __import__("torch").ones(3, 4)})
    response = api.post("/api/v1/checkpoints/", {"file": upload("w.safetensors", content)})
    assert response.status_code == 201, response.content
    checkpoint = response.json()
    keys = [k for k in s3_storage.keys() if k.startswith("checkpoints/")]
    assert any(s3_storage.read(k) == content for k in keys), keys
    assert stored_files(settings.MEDIA_ROOT) == []

    url = f"/api/v1/checkpoints/{checkpoint['id']}/download/"
    assert outsider_api.get(url).status_code == 404  # the owner check holds on S3 too
    download = api.get(url)
    assert download.status_code == 200
    assert download.streaming
    assert b"".join(download.streaming_content) == content
    assert int(download["Content-Length"]) == len(content)
    assert "attachment" in download["Content-Disposition"]


@pytest.mark.django_db
def test_the_same_content_from_two_owners_gets_two_objects(api, outsider_api, s3_storage):
    """Content-addressed names collide across owners: the second must not overwrite (or, on
    delete, remove) the first one's object."""
    content = safetensors_bytes({"w": __import__("torch").zeros(2)})
    first = api.post("/api/v1/checkpoints/", {"file": upload("a.safetensors", content)}).json()
    second = outsider_api.post(
        "/api/v1/checkpoints/", {"file": upload("b.safetensors", content)}
    ).json()
    assert outsider_api.delete(f"/api/v1/checkpoints/{second['id']}/").status_code == 204
    download = api.get(f"/api/v1/checkpoints/{first['id']}/download/")
    assert b"".join(download.streaming_content) == content


@pytest.fixture(scope="module")
def s3_worker(s3, django_db_setup, tmp_path_factory):
    """A second real worker: its own empty storage folder, files only through the bucket.

    It serves a queue of its own, so a session ``worker`` started by other tests (on the
    filesystem) never picks up these jobs.
    """
    from django.db import connection

    from workers.celery import ensure_broker_folders

    ensure_broker_folders()  # the embedded (filesystem) broker, when no CELERY_BROKER_URL is set
    folder = tmp_path_factory.mktemp("s3-worker")
    env = {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",  # test_settings pins the filesystem
        "STORAGE_URL": s3.url,
        "STORAGE_DIR": str(folder / "media"),
    }
    process = WorkerProcess(
        connection.settings_dict, folder / "log", env=env, name="e2e-s3", queues="s3-cpu,s3-gpu"
    )
    try:
        process.wait_ready()
        process.media = folder / "media"
        yield process
    finally:
        process.stop()


@pytest.fixture
def routed_to_s3_worker(monkeypatch):
    from webapp.jobs import kinds

    for name, kind in list(kinds.KINDS.items()):
        monkeypatch.setitem(kinds.KINDS, name, dataclasses.replace(kind, queue=f"s3-{kind.queue}"))


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_sharing_only_database_broker_and_bucket_inspects_an_uploaded_export(
    api, s3_storage, s3_worker, routed_to_s3_worker, settings, tmp_path
):
    content = export_bytes(tmp_path, "cnn")
    architecture = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("cnn.pt2", content)}
    ).json()
    assert any(s3_storage.read(k) == content for k in s3_storage.keys() if k.endswith(".pt2"))
    created = api.post(f"/api/v1/architectures/{architecture['id']}/inspect/").json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{created['id']}/").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(0.3)
    assert job["status"] == "succeeded", (job.get("error"), s3_worker.log()[-3000:])
    assert job["worker"] == s3_worker.hostname
    assert job["result"]["num_params"] == 14_378
    # The artifacts went to the bucket, nowhere on either side's disk.
    tensors = next(a for a in job["artifacts"] if a["name"] == "tensors.json")
    download = api.get(tensors["download_url"])
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert any(s3_storage.read(k) == body for k in s3_storage.keys() if k.endswith(".json"))
    assert stored_files(s3_worker.media) == []
    assert stored_files(settings.MEDIA_ROOT) == []


@pytest.mark.django_db
def test_readyz_answers_200_with_every_check_up_and_503_naming_a_stopped_store(client, s3_storage):
    from django.core.files.storage import default_storage

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    body = ready.json()
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "storage"}
    assert all(check["ok"] for check in body["checks"].values())

    s3_storage.stop()
    try:
        started = time.monotonic()
        down = client.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        s3_storage.start()
    assert down.status_code == 503
    body = down.json()
    assert body["ok"] is False and body["failed"] == ["storage"]
    assert body["checks"]["storage"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert elapsed < 8
    assert default_storage.exists("nothing-here") is False  # back up again


def test_healthz_stays_a_plain_liveness_answer(client):
    assert client.get("/healthz").json() == {"ok": True}


def test_a_bad_storage_url_stops_the_process_with_the_reason():
    from django.core.exceptions import ImproperlyConfigured

    store = parse_object_store("STORAGE_URL", "s3://k:s%2Fx@minio:9000/media?region=eu-1&secure=0")
    assert store.endpoint_url == "http://minio:9000" and store.bucket == "media"
    assert store.secret_key == "s/x" and store.region == "eu-1"
    assert parse_object_store("S", "s3://k:s@h/b").endpoint_url == "https://h"
    aws = parse_object_store("S", "s3:///b?prefix=/media/")
    assert aws.endpoint_url is None and aws.access_key is None and aws.prefix == "media"
    for bad, reason in [
        ("http://k:s@h/b", "scheme"),
        ("s3://k:s@h/", "bucket"),
        ("s3://k:s@h/b/c", "bucket"),
        ("s3://k:s@h/b?secure=maybe", "secure"),
        ("s3://k:s@h/b?colour=blue", "unknown"),
        ("s3://k@h/b", "both"),
        ("s3://k:s@h:port/b", "port"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=reason):
            parse_object_store("STORAGE_URL", bad)


def test_readyz_never_waits_longer_than_its_timeout_for_a_hung_check(client, settings, monkeypatch):
    from webapp.core import health

    settings.READYZ_TIMEOUT = 1
    monkeypatch.setitem(health.CHECKS, "database", lambda: time.sleep(5))
    monkeypatch.setitem(health.CHECKS, "broker", lambda: None)
    monkeypatch.setitem(health.CHECKS, "storage", lambda: None)
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 2.5
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert "no answer within 1 s" in response.json()["checks"]["database"]["error"]
