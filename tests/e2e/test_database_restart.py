"""A PostgreSQL restart, as a script and a person meet it: the real site (gunicorn, DEBUG off,
kept connections as in production) runs against a PostgreSQL of the test's own; while that is
stopped the API answers 503 with a JSON sentence and pages a plain-text one, never Django's
HTML 500; once it is started again the same processes answer 200 within a few seconds, with
no restart of the site.

The machine's shared PostgreSQL is left alone: the test runs ``initdb`` into a folder of its
own (as the ``postgres`` user when it runs as root) and serves it on a free loopback port.
"""

from __future__ import annotations

import glob
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
PG_BIN = Path(PG_BINS[-1]) if PG_BINS else None
pytestmark = [
    pytest.mark.skipif(
        PG_BIN is None or not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists(),
        reason="needs the PostgreSQL server binaries (initdb, pg_ctl under /usr/lib/postgresql)",
    ),
    pytest.mark.skipif(shutil.which("gunicorn") is None and not (
        Path(sys.executable).parent / "gunicorn").exists(), reason="needs gunicorn"),
]  # fmt: skip

DOWN = "The database is unavailable right now; try again shortly."
RECOVERY_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, on a free loopback port (trust auth)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wspg-", dir="/tmp"))
        self.data = self.root / "data"
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self.as_postgres, *args], check=True, capture_output=True, timeout=timeout,
            cwd=self.root,
        )  # fmt: skip

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> None:
        self._run(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            name,
        )  # fmt: skip

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Site:
    """The web process (gunicorn, as compose.yaml runs it) and an HTTP client for it."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.token = ""
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirects(),
        )

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def start(self) -> None:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.log = open(self.workdir / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(gunicorn if gunicorn.exists() else "gunicorn"), "webapp.wsgi:application",
             "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                if self.get("/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("gunicorn did not answer /healthz:\n" + self.log_tail())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()

    def log_tail(self) -> str:
        self.log.flush()
        return (self.workdir / "gunicorn.log").read_text(errors="replace")[-4000:]

    def request(self, path: str, *, data: dict | None = None, token: bool = False) -> Answer:
        headers = {"Authorization": f"Token {self.token}"} if token else {}
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        if data is not None:
            headers["Referer"] = self.base + path
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with self.opener.open(request, timeout=20) as response:
                return Answer(response.status, response.headers.get("Content-Type", ""),
                              response.read())  # fmt: skip
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.headers.get("Content-Type", ""), error.read())

    def get(self, path: str, **kwargs) -> Answer:
        return self.request(path, **kwargs)

    def api(self, path: str = "/api/v1/architectures/") -> Answer:
        return self.request(path, token=True)

    def log_in(self, username: str, password: str) -> None:
        page = self.get("/login/")
        assert page.status == 200
        csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        assert csrf, "no CSRF token on the login page"
        answer = self.request(
            "/login/",
            data={"username": username, "password": password,
                  "csrfmiddlewaretoken": csrf.group(1).decode()},
        )  # fmt: skip
        assert answer.status == 302, answer.body[:500]
        assert self.get("/").status == 200


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None  # a 302 is an answer to look at, not to follow


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        server.create_database("weightspace")
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["60", "0"], ids=["kept-connections", "a-connection-per-request"])
def site(postgres, tmp_path, request) -> Iterator[Site]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "CELERY_", "STORAGE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{postgres.port}/weightspace",
        DATABASE_CONN_MAX_AGE=request.param,  # 60: kept connections, as compose.yaml has it
        DEBUG="0",
        SECRET_KEY="database-restart-test-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_COOKIES="0",  # plain HTTP on loopback
        WEIGHTSPACE_VAR_DIR=str(tmp_path / "var"),
        STORAGE_DIR=str(tmp_path / "media"),
        CELERY_BROKER_URL="memory://",
        PYTHONUNBUFFERED="1",
    )
    server = Site(env, tmp_path)
    server.manage("migrate", "--noinput")
    out = server.manage("weightspace_user", "--username", "restart", "--password", "pw-restart-1")
    token = re.search(r"API token: (\w+)", out)
    assert token, out
    server.token = token.group(1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _assert_outage_answer(answer: Answer, *, api: bool) -> None:
    assert answer.status == 503, (answer.status, answer.body[:300])
    if api:
        assert answer.content_type.startswith("application/json"), answer.content_type
        assert answer.json() == {"detail": DOWN}
    else:
        assert answer.content_type.startswith("text/plain"), answer.content_type
        assert answer.body.decode() == DOWN
    assert b"<html" not in answer.body.lower()


def test_a_postgres_restart_gives_503_sentences_then_200_without_restarting_the_site(
    postgres, site
):
    site.log_in("restart", "pw-restart-1")
    # Several requests, so that each gunicorn worker holds a kept connection to lose.
    for _ in range(6):
        answer = site.api()
        assert answer.status == 200, answer.body[:300]
        assert answer.content_type.startswith("application/json")

    postgres.stop()
    seen: list[tuple[str, int]] = []
    for _ in range(4):  # token API, the API root, and a logged-in page (session in PostgreSQL)
        for path, api in (("/api/v1/architectures/", True), ("/api/v1/jobs/", True)):
            answer = site.api(path)
            seen.append((path, answer.status))
            _assert_outage_answer(answer, api=api)
        answer = site.get("/")
        seen.append(("/", answer.status))
        _assert_outage_answer(answer, api=False)
    answer = site.request(
        "/api/v1/jobs/", data={"kind": "inspect", "architecture": "1"}, token=True
    )
    seen.append(("POST /api/v1/jobs/", answer.status))
    _assert_outage_answer(answer, api=True)
    assert site.get("/healthz").status == 200  # liveness needs no database

    postgres.start()
    started = time.monotonic()
    while True:
        answer = site.api()
        seen.append(("/api/v1/architectures/ (recovering)", answer.status))
        if answer.status == 200:
            break
        _assert_outage_answer(answer, api=True)  # still down: the same sentence, never a 500
        assert time.monotonic() - started < RECOVERY_SECONDS, seen
        time.sleep(0.1)
    # Every worker is back, for the API and for pages.
    for _ in range(4):
        assert site.api().status == 200
        assert site.get("/").status == 200
    print("statuses seen:", seen)
    log = site.log_tail()
    assert "Internal Server Error" not in log and "Traceback" not in log, log
