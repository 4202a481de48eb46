"""Start a real Celery worker process against the test database and the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from tests.paths import ROOT


def database_url(settings_dict: dict) -> str:
    """A ``DATABASE_URL`` pointing at the database the test run created."""
    engine, name = settings_dict["ENGINE"], settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{Path(name).resolve()}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{name}"


class WorkerProcess:
    """A ``celery worker`` subprocess; its log is kept for assertions and failure reports."""

    def __init__(
        self,
        db_settings: dict,
        log_path: Path,
        env: dict[str, str] | None = None,
        name: str = "e2e",
        queues: str = "cpu,gpu",
    ) -> None:
        """``env`` is laid over the worker's environment last (e.g. a storage URL); ``name``
        and ``queues`` let a second worker run beside the session's one without sharing work."""
        self.log_path = log_path
        environment = dict(os.environ)
        environment.update(
            DJANGO_SETTINGS_MODULE="webapp.test_settings",
            DATABASE_URL=database_url(db_settings),
            PYTHONUNBUFFERED="1",
        )
        environment.update(env or {})
        self.hostname = f"{name}-{os.getpid()}@localhost"
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery",
                "worker",
                "-Q",
                queues,
                "-c",
                "1",
                "-n",
                self.hostname,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],  # fmt: skip
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def pool_processes(self) -> list[int]:
        """PIDs of the worker's pool processes (its direct children), read from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.log()}")
            time.sleep(0.3)
        raise RuntimeError(f"the worker did not become ready:\n{self.log()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
