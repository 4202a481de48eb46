"""The sandbox for Python model sources isolates secrets, files, network and processes.

Every test runs real user code through ``inspect_model``; nothing is mocked. Attack sources
end by raising ``RuntimeError("outcome: ...")`` so the inspection fails with a message that
says what the attack managed: "outcome: blocked ..." when every attempt failed, "outcome:
LEAKED ..." otherwise. That also proves the attack code ran at all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

from workers.errors import Cancelled, ModelError
from workers.pipelines.inspect import ModelSpec, inspect_model
from workers.sandbox import isolation

# CI runs as root, where isolation must work; elsewhere (a non-root worker in a container
# without user namespaces, say) the attacks are skipped and only the refusal is tested.
_REASON = None if os.geteuid() == 0 else isolation.unavailable_reason()
needs_isolation = pytest.mark.skipif(
    _REASON is not None, reason=f"this host cannot isolate the sandbox: {_REASON}"
)

MODEL = """
import torch
from torch import nn

INPUT_SHAPE = (4,)


def build_model():
    return nn.Linear(4, 2)
"""


def _source(tmp_path: Path, text: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(text)
    return str(path)


def _outcome(tmp_path: Path, attack: str) -> str:
    """Run an attack source; return what it reported after "outcome: "."""
    with pytest.raises(ModelError) as caught:
        inspect_model(ModelSpec("python", path=_source(tmp_path, attack + MODEL)))
    message = str(caught.value)
    assert "outcome: " in message, message
    return message.split("outcome: ", 1)[1]


@needs_isolation
def test_user_code_cannot_read_the_workers_environment(tmp_path, monkeypatch):
    secret = "ws-" + secrets.token_hex(12)
    monkeypatch.setenv("WEIGHTSPACE_TEST_SECRET", secret)
    attack = f"""
import glob, os
got = []
if {secret!r} in repr(dict(os.environ)):
    got.append("own environment")
for path in ["/proc/{os.getpid()}/environ", f"/proc/{{os.getppid()}}/environ",
             *glob.glob("/proc/*/environ")]:
    try:
        if {secret!r}.encode() in open(path, "rb").read():
            got.append(path)
    except OSError:
        pass
raise RuntimeError("outcome: " + ("LEAKED " + repr(got) if got else "blocked"))
"""
    assert _outcome(tmp_path, attack) == "blocked"


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_after_a_sandbox_ran_the_workers_environment_is_unreadable_to_other_uids(tmp_path):
    isolation.unavailable_reason()  # runs a sandbox (the probe) at least once per process
    inspect_model(ModelSpec("python", path=_source(tmp_path, MODEL)))
    reader = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "cat",
            f"/proc/{os.getpid()}/environ",
        ],
        capture_output=True,
        text=True,
    )
    assert reader.returncode != 0
    assert "Permission denied" in reader.stderr


@needs_isolation
def test_user_code_cannot_connect_to_a_server_on_the_host(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        attack = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
    result = "LEAKED connected"
except OSError as exc:
    result = "blocked " + type(exc).__name__ + " " + str(exc.errno)
raise RuntimeError("outcome: " + result)
"""
        outcome = _outcome(tmp_path, attack)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert outcome.startswith("blocked"), outcome


@needs_isolation
def test_user_code_cannot_write_outside_its_work_dir(tmp_path):
    name = f"weightspace-attack-{uuid.uuid4().hex}"
    project = Path(__file__).resolve().parents[3]
    targets = [f"/tmp/{name}", str(tmp_path / name), str(project / "workers" / name)]
    attack = f"""
import os
wrote = []
for path in {targets!r}:
    try:
        with open(path, "w") as f:
            f.write("x")
        wrote.append(path)
    except OSError:
        pass
open("allowed-here.txt", "w").write("the work dir is writable")
raise RuntimeError("outcome: " + ("LEAKED " + repr(wrote) if wrote else "blocked"))
"""
    assert _outcome(tmp_path, attack) == "blocked"
    for target in targets:
        assert not os.path.lexists(target)


@needs_isolation
def test_user_code_cannot_fork_two_hundred_processes(tmp_path):
    attack = """
import os, signal, time
children = []
error = None
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
if error is None:
    raise RuntimeError("outcome: LEAKED forked 200")
raise RuntimeError(f"outcome: blocked after {len(children)} forks")
"""
    outcome = _outcome(tmp_path, attack)
    assert outcome.startswith("blocked after"), outcome
    assert int(outcome.split()[2]) < isolation.NPROC_LIMIT


@needs_isolation
def test_a_normal_python_model_still_inspects_as_another_user_in_its_own_namespaces(tmp_path):
    project = Path(__file__).resolve().parents[3]
    hidden = ["/etc/shadow", "/home", str(project / "webapp"), str(project / "manage.py")]
    check = f"""
import os
problems = []
if os.getuid() in (0, {os.getuid()}):
    problems.append(f"uid {{os.getuid()}}")
if os.getpid() != 2:
    problems.append(f"pid {{os.getpid()}}")
if not os.path.basename(os.getcwd()).startswith("weightspace-sandbox-"):
    problems.append("cwd " + os.getcwd())
open("scratch.txt", "w").write("the work dir is writable")
extra = set(os.environ) - {{"PATH", "PYTHONPATH", "HOME", "TMPDIR", "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}}
if extra:
    problems.append(f"environment {{sorted(extra)}}")
if any(os.path.exists(p) for p in {hidden!r}):
    problems.append("sees the host's files")
if len(open("/etc/passwd").read().splitlines()) != 2:
    problems.append("sees the host's /etc/passwd")
if problems:
    raise RuntimeError("not isolated: " + ", ".join(problems))
"""
    result = inspect_model(ModelSpec("python", path=_source(tmp_path, check + MODEL)))
    assert result.num_params == 4 * 2 + 2
    assert result.layers == {"Linear": 1}


def _processes_running(marker: str) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            count += 1
    return count


@needs_isolation
def test_cancelling_kills_every_sandbox_process_even_one_that_left_the_session(tmp_path):
    attack = """
import os, time
if os.fork() == 0:
    os.setsid()
    while True:
        time.sleep(1)
while True:
    pass
"""
    path = _source(tmp_path, attack)
    seen: list[int] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(_processes_running(path))
        if len(seen) > 4:
            raise Cancelled()

    with pytest.raises(Cancelled):
        inspect_model(ModelSpec("python", path=path), progress)
    # Launcher, namespace init, inspection and the escaped child all carry the path.
    assert max(seen) >= 4, seen
    deadline = time.monotonic() + 10
    while _processes_running(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_running(path) == 0


def test_python_sources_are_refused_with_a_reason_when_the_host_cannot_isolate(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("WEIGHTSPACE_SANDBOX", "off")
    with pytest.raises(ModelError) as caught:
        inspect_model(ModelSpec("python", path=_source(tmp_path, MODEL)))
    assert str(caught.value) == (
        "This server cannot isolate Python model sources (isolation is switched off by "
        "WEIGHTSPACE_SANDBOX=off); upload a torch.export archive instead."
    )


@needs_isolation
@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_export_archives_inspect_with_and_without_isolation(tmp_path, monkeypatch, sandbox):
    monkeypatch.setenv("WEIGHTSPACE_SANDBOX", sandbox)
    ep = torch.export.export(torch.nn.Linear(4, 2), (torch.randn(2, 4),))
    path = tmp_path / "linear.pt2"
    torch.export.save(ep, path)
    result = inspect_model(ModelSpec("export", path=str(path)))
    assert result.num_params == 4 * 2 + 2
