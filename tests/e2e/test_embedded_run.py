"""`make run`'s shape, for real: SQLite and the filesystem broker in a fresh var/ folder, the
site and a worker started by `manage.py run_embedded`, a job done through the API, and Ctrl-C
stopping both processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.paths import ROOT

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="webapp.settings",
        WEIGHTSPACE_VAR_DIR=str(tmp_path / "var"),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_embedded_site_and_worker_run_a_job_and_stop_on_ctrl_c(embedded_env, tmp_path):
    manage(embedded_env, "migrate", "--noinput")
    printed = manage(embedded_env, "weightspace_user", "--username", "demo")
    token = re.search(r"API token: (\w+)", printed).group(1)
    assert re.search(r"as\s+demo / \S+", printed)  # the password is shown to the person

    port = free_port()
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_embedded", "--addrport", f"127.0.0.1:{port}"],
        cwd=ROOT, env=embedded_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Token {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        architecture = requests.post(
            f"{base}/architectures/", json={"source": "zoo", "zoo_name": "cnn"}, headers=headers
        ).json()
        job = requests.post(
            f"{base}/jobs/", json={"kind": "inspect", "architecture": architecture["id"]},
            headers=headers,
        ).json()  # fmt: skip
        while job["status"] in {"queued", "running"}:
            assert time.monotonic() < deadline + 120, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
            job = requests.get(f"{base}/jobs/{job['id']}/", headers=headers).json()
        assert job["status"] == "succeeded", job["error"]
        assert job["result"]["num_params"] == 14_378
        assert (tmp_path / "var" / "weightspace.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=60)
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert "Stopping the site and the worker" in output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
