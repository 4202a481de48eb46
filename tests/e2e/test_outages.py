"""Outages of the real services, as a person meets them: with the broker (a real Redis of
the test's own, stopped and started again) down, submitting a job answers 503 with a sentence
and leaves no row waiting ``queued`` for a message never sent; once it is back, jobs queue
again. API errors are JSON, never Django's HTML page."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.factories import zoo_architecture
from webapp.jobs.models import Job

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server on a free loopback port, which the test can stop and start."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _use_broker(url: str) -> None:
    from workers.celery import app

    app.conf.broker_write_url = url  # what sending uses (settings fill it from CELERY_BROKER_URL)
    # Forget the pooled connections to the previous broker.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    from workers.celery import app

    original = app.conf.broker_write_url
    redis = PrivateRedis()
    redis.start()
    _use_broker(f"redis://127.0.0.1:{redis.port}/0")
    try:
        yield redis
    finally:
        redis.stop()
        _use_broker(original)


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_job_gets_a_503_and_no_stuck_row_and_queues_once_it_is_back(
    api, owner, broker
):
    architecture = zoo_architecture(owner, "cnn")
    job = {"kind": "inspect", "architecture": architecture.pk}
    assert api.post("/api/v1/jobs/", job, format="json").status_code == 201

    broker.stop()
    started = time.monotonic()
    response = api.post("/api/v1/jobs/", job, format="json")
    assert response.status_code == 503
    assert "queue is unavailable" in response.json()["detail"]
    assert time.monotonic() - started < 15  # a person is waiting: retries are short
    refused = Job.objects.order_by("-pk").first()
    assert refused.status == Job.Status.FAILED and "never started" in refused.error

    broker.start()
    assert api.post("/api/v1/jobs/", job, format="json").status_code == 201
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == 2


def test_an_unknown_api_address_answers_json(api):
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"] == "Not Found"


@pytest.mark.django_db
def test_an_unexpected_api_error_answers_json_with_a_sentence(api, monkeypatch, tmp_path):
    from tests.conftest import export_bytes, upload
    from webapp.architectures.models import Architecture

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Architecture, "save", explode)
    api.raise_request_exception = False  # answer as the server would, not re-raise
    content = export_bytes(tmp_path)
    response = api.post(
        "/api/v1/architectures/", {"source": "export", "file": upload("c.pt2", content)}
    )
    assert response.status_code == 500
    assert "unexpected error" in response.json()["detail"]
    assert "database went away" not in response.content.decode()


def test_an_outage_raised_outside_a_view_is_still_a_503_sentence(rf):
    from django.db import OperationalError

    from webapp.core.middleware import server_error

    for path, kind in (("/api/v1/jobs/", "application/json"), ("/", "text/plain")):
        try:
            raise OperationalError("connection refused")  # as a session save would
        except OperationalError:
            response = server_error(rf.get(path))
        assert response.status_code == 503 and response["Content-Type"].startswith(kind)
        assert b"database is unavailable" in response.content
