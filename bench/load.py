"""Load test of the web tier: gunicorn + PostgreSQL on loopback, a bounded Python load tool.

    .venv/bin/python bench/load.py                  # concurrency 1, 4, 16, 64; 300 requests each
    .venv/bin/python bench/load.py --quick          # 1, 4, 16; 60 requests each (~1 min)
    .venv/bin/python bench/load.py --concurrency 1 4 --requests 100 --time-cap 120

Steps, all in this one command:

1. (Re)create the PostgreSQL database ``weightspace_load`` on 127.0.0.1:5432 (user
   ``postgres``; ``--database-url`` to change) and run ``manage.py migrate``.
2. Seed: a user with an API token, ``--rows`` (100) architectures and jobs in every status
   (a third with two artifacts), 20 checkpoints and 20 data sets, with columns the size real
   ones have (layer summaries, results, tracebacks, a 102-tensor table per checkpoint: a page
   that loads columns it never shows pays for them). Then, in that same process,
   time each page in-process (Django's test client, DEBUG off) and count its queries: the
   "server ms" column, without HTTP or the load tool in it.
3. Start gunicorn on ``webapp.wsgi`` (``--workers`` sync workers, DEBUG off, ``SECRET_KEY``
   set, ``ALLOWED_HOSTS=127.0.0.1``, ``DATABASE_CONN_MAX_AGE=60`` as compose.yaml has).
4. Log in through ``/login/`` (CSRF token from the form) for the dashboard's session; the API
   uses the token.
5. For each concurrency level and endpoint: ``--requests`` GETs spread over that many threads,
   each with its own keep-alive ``http.client`` connection (gunicorn's sync workers close after
   each response; the connection reopens), after a short warm-up. A level stops early at
   ``--level-cap`` seconds and the whole run at ``--time-cap``; skipped cells are marked.
   ``/healthz`` is measured in the same run, at every level, as the reference.

Prints a table (req/s, p50/p95/p99 ms, errors, share of ``/healthz``'s req/s at the same
concurrency) and writes ``bench/results/load.json``. Loopback only; stops by itself; the
gunicorn process it started is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/weightspace_load"
USERNAME, PASSWORD = "loadtest", "load-test-pass-123"

# name, path (``{arch}`` is one seeded architecture's id), authentication
ENDPOINTS = [
    ("healthz", "/healthz", None),
    ("architectures list", "/api/v1/architectures/", "token"),
    ("architecture detail", "/api/v1/architectures/{arch}/", "token"),
    ("jobs list", "/api/v1/jobs/", "token"),
    ("dashboard", "/", "session"),
]

SEED = r"""
import json, statistics, sys, time
import django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.datasets.models import Dataset
from webapp.jobs.models import Artifact, Job

rows, paths = int(sys.argv[1]), json.loads(sys.argv[2])
user = get_user_model().objects.create_user(@USERNAME@, password=@PASSWORD@)
token = Token.objects.create(user=user).key
# Sizes as real rows have them: an inspected model's layer summary, a train job's result and
# parameters, a failed job's traceback, a checkpoint's tensor table (ResNet-18: 102 tensors).
layers = {"Conv2d": 20, "BatchNorm2d": 20, "ReLU": 17, "Linear": 1, "MaxPool2d": 1,
          "AdaptiveAvgPool2d": 1, "Sequential": 4, "BasicBlock": 8}
tensors = [{"name": f"layer{k // 25}.{k % 25}.weight", "dtype": "float32",
            "shape": [64, 64, 3, 3], "numel": 36864} for k in range(102)]
traceback = "Traceback (most recent call last):" + '  File "x.py", line 1, in f;' * 60
arches = Architecture.objects.bulk_create(
    Architecture(owner=user, name=f"mlp-{i}", source="zoo", zoo_name="mlp",
                 zoo_args={"hidden": [8 + i]}, sha256=f"{i:064d}",
                 num_params=10_000 + 1_000 * i if i % 4 else None,
                 input_shape=[1, 1, 28, 28] if i % 4 else None,
                 summary={"layers": layers} if i % 4 else {})
    for i in range(rows))
statuses = ["queued", "running", "succeeded", "succeeded", "failed", "cancelled"]
now = timezone.now()
jobs = Job.objects.bulk_create(
    Job(owner=user, kind="inspect", architecture=arches[i], status=statuses[i % 6],
        progress=(i % 10) / 10, message=f"Step {i}: measuring the model " * 2,
        started_at=now, finished_at=None if statuses[i % 6] in ("queued", "running") else now,
        worker="cpu@load", error=traceback if statuses[i % 6] == "failed" else "",
        parameters={"dataset": "fashion_mnist", "steps": 1000, "lr": 0.001, "batch_size": 128},
        result={"num_params": 10_000 + i, "input_shape": [1, 1, 28, 28], "layers": layers,
                "runs": {"adam": {"accuracy": [0.1 * k for k in range(50)]}}}
        if i % 6 in (2, 3) else {})
    for i in range(rows))
Artifact.objects.bulk_create(
    Artifact(job=job, kind="graph", name=name, file=f"artifacts/{job.pk}/{name}", bytes=12_345,
             sha256="f" * 64, content_type="application/json")
    for job in jobs[::3] for name in ("arch_graph.json", "tensors.json"))
Checkpoint.objects.bulk_create(
    Checkpoint(owner=user, name=f"ck-{i}", file=f"checkpoints/{i}.safetensors",
               format="safetensors", num_tensors=102, file_bytes=46_800_000,
               sha256=f"{i:064d}", tensors=tensors, metadata={"format": "pt"},
               architecture=arches[i])
    for i in range(20))
Dataset.objects.bulk_create(
    Dataset(owner=user, name=f"ds-{i}", format="npz", file=f"datasets/{i}.npz",
            file_bytes=20_480, sha256=f"{i:064d}")
    for i in range(20))
arch = arches[rows // 2].pk

# In-process server time: Django alone, no HTTP, no load tool.
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
server = {}
for name, path, auth in paths:
    c = client if auth == "session" else api
    path = path.format(arch=arch)
    for _ in range(3):
        c.get(path)
    times = []
    for _ in range(25):
        t0 = time.perf_counter()
        response = c.get(path)
        times.append(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as queries:
        response = c.get(path)
    assert response.status_code == 200, (path, response.status_code)
    server[name] = {"server_ms_median": 1000 * statistics.median(times),
                    "server_ms_min": 1000 * min(times), "queries": len(queries),
                    "bytes": len(response.content)}
print("SEED " + json.dumps({"token": token, "arch": arch, "server": server}))
""".replace("@USERNAME@", repr(USERNAME)).replace("@PASSWORD@", repr(PASSWORD))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def django_env(args: argparse.Namespace, var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings",
        DEBUG="0",
        SECRET_KEY="load-test-secret-key-only-for-this-benchmark-run-0123456789",
        ALLOWED_HOSTS=HOST,
        DATABASE_URL=args.database_url,
        DATABASE_CONN_MAX_AGE="60",
        WEIGHTSPACE_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SystemExit(f"unexpected database name {name!r}")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


class Gunicorn:
    def __init__(self, env: dict[str, str], port: int, workers: int) -> None:
        self.port = port
        command = [
            PYTHON, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"{HOST}:{port}",
            "--workers", str(workers), "--worker-class", "sync", "--timeout", "60",
            "--backlog", "2048", "--worker-tmp-dir", "/dev/shm", "--log-level", "warning",
        ]  # fmt: skip
        self.log = tempfile.NamedTemporaryFile("w+", prefix="gunicorn-", suffix=".log")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer /healthz in {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return "".join(self.log.readlines()[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def login(port: int) -> str:
    """Sign in through /login/ as a browser does; return the session cookie header."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/login/")
    response = conn.getresponse()
    page = response.read().decode()
    cookies = cookie_values(response)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urlencode({"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": csrf})
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("POST", "/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookies['csrftoken']}",
    })  # fmt: skip
    response = conn.getresponse()
    response.read()
    session = cookie_values(response).get("sessionid")
    if response.status != 302 or not session:
        raise SystemExit(f"login failed: {response.status}")
    return f"sessionid={session}"


def cookie_values(response: http.client.HTTPResponse) -> dict[str, str]:
    values = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        values[name.strip()] = rest.split(";", 1)[0]
    return values


def measure(port: int, path: str, headers: dict[str, str], concurrency: int, requests: int,
            cap_s: float) -> dict:  # fmt: skip
    """``requests`` GETs of ``path`` over ``concurrency`` keep-alive connections."""
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "statuses": {}}
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def take() -> bool:
        with lock:
            if state["next"] >= requests or time.monotonic() > deadline[0]:
                return False
            state["next"] += 1
            return True

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        mine: list[float] = []
        barrier.wait()
        while take():
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                status = "error"
            elapsed = time.perf_counter() - started
            with lock:
                state["statuses"][str(status)] = state["statuses"].get(str(status), 0) + 1
            if status == 200:
                mine.append(elapsed)
            else:
                with lock:
                    state["errors"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + cap_s
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join(cap_s + 90)
    wall = time.perf_counter() - started
    latencies.sort()
    done = len(latencies)
    return {
        "concurrency": concurrency,
        "requests": state["next"],
        "ok": done,
        "errors": state["errors"],
        "statuses": state["statuses"],
        "wall_s": round(wall, 3),
        "capped": state["next"] < requests,
        "rps": round(done / wall, 2) if wall > 0 else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p95_ms": round(1000 * percentile(latencies, 95), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "mean_ms": round(1000 * statistics.fmean(latencies), 2) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1, 4, 16; 60 requests per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--requests", type=int, default=None, help="per endpoint and level")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--rows", type=int, default=100, help="architectures and jobs seeded")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--level-cap", type=float, default=30.0, help="seconds per cell")
    parser.add_argument("--time-cap", type=float, default=600.0, help="seconds for all cells")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    levels = args.concurrency or ([1, 4, 16] if args.quick else [1, 4, 16, 64])
    requests = args.requests or (60 if args.quick else 300)
    if urlsplit(args.database_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback databases only")

    var_dir = Path(tempfile.mkdtemp(prefix="weightspace-load-"))
    (var_dir / "staticfiles").mkdir()
    env = django_env(args, var_dir)
    print(f"database {args.database_url}: recreate and migrate", flush=True)
    recreate_database(args.database_url)
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True)  # fmt: skip
    print(f"seed {args.rows} architectures and jobs; time pages in-process", flush=True)
    seeded = subprocess.run(
        [PYTHON, "-c", SEED, str(args.rows), json.dumps(ENDPOINTS)], cwd=ROOT, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    if seeded.returncode:
        raise SystemExit(f"seeding failed:\n{seeded.stderr[-3000:]}")
    seed = json.loads(seeded.stdout.split("SEED ", 1)[1])

    server = Gunicorn(env, args.port, args.workers)
    results: list[dict] = []
    try:
        server.wait_ready()
        session = login(args.port)
        auth = {
            None: {},
            "token": {"Authorization": f"Token {seed['token']}"},
            "session": {"Cookie": session},
        }
        run_deadline = time.monotonic() + args.time_cap
        for _name, path, how in ENDPOINTS:  # warm every worker: imports, templates, connections
            measure(args.port, path.format(arch=seed["arch"]), auth[how], args.workers,
                    4 * args.workers, 30)  # fmt: skip
        for level in levels:
            for name, path, how in ENDPOINTS:
                left = run_deadline - time.monotonic()
                row = {"endpoint": name, "path": path, "concurrency": level}
                if left < 1:
                    row["skipped"] = "time cap reached"
                else:
                    cap = min(args.level_cap, left)
                    row |= measure(args.port, path.format(arch=seed["arch"]), auth[how], level,
                                   requests, cap)  # fmt: skip
                results.append(row)
                print(f"  c={level:<3} {name:<20} {row.get('rps', '-'):>8} req/s  "
                      f"p50 {row.get('p50_ms', '-')} ms  p99 {row.get('p99_ms', '-')} ms  "
                      f"errors {row.get('errors', '-')}", flush=True)  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(var_dir, ignore_errors=True)

    health = {r["concurrency"]: r.get("rps") for r in results if r["endpoint"] == "healthz"}
    for row in results:
        base = health.get(row["concurrency"])
        if row.get("rps") is not None and base:
            row["share_of_healthz"] = round(row["rps"] / base, 3)
    print()
    print("| endpoint | server ms (in-process, median) | queries |")
    print("|---|---|---|")
    for name, _, _ in ENDPOINTS:
        s = seed["server"][name]
        print(f"| {name} | {s['server_ms_median']:.1f} | {s['queries']} |")
    print()
    print("| endpoint | c | req/s | % of /healthz | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        if "skipped" in row:
            print(f"| {row['endpoint']} | {row['concurrency']} | skipped: {row['skipped']} |"
                  " | | | | |")  # fmt: skip
            continue
        share = row.get("share_of_healthz")
        share_text = "—" if row["endpoint"] == "healthz" or share is None else f"{100 * share:.0f}%"
        capped = " (capped)" if row["capped"] else ""
        print(f"| {row['endpoint']} | {row['concurrency']} | {row['rps']:.1f}{capped} | "
              f"{share_text} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | "
              f"{row['errors']} |")  # fmt: skip
    goal = [r for r in results if r["endpoint"] != "healthz" and "share_of_healthz" in r]
    met = all(r["share_of_healthz"] >= 0.30 and r["errors"] == 0 for r in goal)
    print(f"\ngoal (every list/detail/dashboard cell >= 30% of /healthz, no errors): "
          f"{'met' if met else 'NOT met'}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "config": {"workers": args.workers, "worker_class": "sync", "rows": args.rows,
                   "requests_per_cell": requests, "levels": levels,
                   "level_cap_s": args.level_cap, "time_cap_s": args.time_cap,
                   "database": args.database_url, "conn_max_age": 60, "debug": False},
        "server_in_process": seed["server"],
        "results": results,
        "goal_met": met,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
