"""Run the site and a Celery worker together, on the embedded defaults; Ctrl-C stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the development server and a Celery worker (both queues); Ctrl-C stops both."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addrport", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        commands = [
            [python, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "cpu,gpu",
             "-c", "1", "-n", "embedded@%h", "--loglevel", "INFO"],
            [python, "manage.py", "runserver", options["addrport"]],
        ]  # fmt: skip
        processes = [subprocess.Popen(command) for command in commands]
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(p.poll() is None for p in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        self.stdout.write("Stopping the site and the worker…")
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        failed = [p.args[2] for p in processes if p.returncode not in (0, -15, 1) and not stopping]
        if failed:
            raise SystemExit(f"stopped because a process exited: {failed}")
