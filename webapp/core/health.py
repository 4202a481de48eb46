"""Readiness: can this process reach what a request needs (database, broker, storage)?

``/healthz`` answers as long as the process runs (liveness); ``/readyz`` runs the three checks
below side by side, each in its own thread, and answers 503 naming the failed ones. A check
that has not answered within ``READYZ_TIMEOUT`` seconds counts as failed, so a black-holed
host never holds the probe (its thread ends on its own, bounded by the clients' timeouts).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, JsonResponse

PROBE_NAME = ".readyz-probe"


def check_database() -> None:
    from django.db import connections

    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's own connection; never left open


def check_broker() -> None:
    from workers.celery import app

    timeout = settings.READYZ_TIMEOUT
    with app.connection_for_write(connect_timeout=timeout) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2, timeout=timeout
        )


def check_storage() -> None:
    from django.core.files.storage import default_storage

    bucket = getattr(default_storage, "bucket_name", None)
    if bucket:
        # A missing bucket, bad credentials or a dead server all fail here (exists() would
        # answer False for a missing bucket).
        default_storage.connection.meta.client.head_bucket(Bucket=bucket)
    else:
        default_storage.exists(PROBE_NAME)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
}


def run_checks(timeout: float | None = None) -> dict[str, dict[str, object]]:
    """``{name: {"ok": bool, "ms": int, "error": str?}}`` for every check, within ``timeout``."""
    timeout = settings.READYZ_TIMEOUT if timeout is None else timeout
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(CHECKS))
    started = time.monotonic()
    futures = {name: pool.submit(check) for name, check in CHECKS.items()}
    pool.shutdown(wait=False)  # a hung check's thread is left to finish on its own
    results: dict[str, dict[str, object]] = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            future.result(timeout=remaining)
            results[name] = {"ok": True}
        except concurrent.futures.TimeoutError:
            results[name] = {"ok": False, "error": f"no answer within {timeout:g} s"}
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        results[name]["ms"] = int((time.monotonic() - started) * 1000)
    return results


def readyz(request: HttpRequest) -> JsonResponse:
    checks = run_checks()
    ok = all(result["ok"] for result in checks.values())
    body: dict[str, object] = {"ok": ok, "checks": checks}
    if not ok:
        body["failed"] = [name for name, result in checks.items() if not result["ok"]]
    return JsonResponse(body, status=200 if ok else 503)
