"""The README's examples, run in order as a new user would paste them: with bash (and the
project's Python for the ``requests`` scripts) against a live server and a real worker.

Every fenced block that follows a ``<!-- readme-test -->`` comment is run. Shell blocks share
their variables and functions through a state file, as one terminal session would; Python
blocks run as scripts. ``http://127.0.0.1:8000`` becomes the live server's URL; ``TOKEN`` and
``PASSWORD`` come from a freshly created ``admin`` account, and ``STEPS`` (the README's
``${STEPS:-10000}``) is set small so the training examples take seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT as REPO_ROOT

README = REPO_ROOT / "README.md"
MARKER = "<!-- readme-test -->"
README_URL = "http://127.0.0.1:8000"
STEPS = "30"
BLOCK_TIMEOUT = 300  # seconds per block; training and predicting on a loaded machine

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Names a shell block assigns at the start of a line (BASE=..., CNN=$(...)): its state.
ASSIGNED = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    language: str  # "bash" or "python"
    code: str
    line: int  # where the fence opens in README.md, for the failure message


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks that directly follow the marker comment, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        if before.endswith(MARKER):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(match.group(1) or "bash", match.group(2), line))
    return blocks


def test_the_readme_marks_its_examples_in_both_languages():
    blocks = readme_blocks(README.read_text())
    assert {block.language for block in blocks} == {"bash", "python"}
    assert len(blocks) >= 10
    every_fence = FENCE.findall(README.read_text())
    marked_code = {block.code for block in blocks}
    # Every curl in the README that talks to the API is in a block the test runs.
    for _, code in every_fence:
        if "$BASE" in code and "curl" in code:
            assert code in marked_code, f"an API example is not marked {MARKER}:\n{code}"


def test_every_curl_in_the_readme_checks_its_status():
    for block in readme_blocks(README.read_text()):
        code = block.code.replace("\\\n", " ")  # continuation lines are one command
        for command in re.findall(r"curl [^\n]*", code):
            if "--fail-with-body" in command or "curl -sf" in command:
                continue
            # The examples that show a refusal on purpose keep the code and check it.
            assert "CODE=$(curl" in code and re.search(r'\[ "\$CODE" = 4\d\d \]', code), (
                f"README block at line {block.line} does not check: {command}"
            )


def shell_script(block: Block, state: Path, names: list[str]) -> str:
    """The block as a bash script that starts from the previous blocks' state, stops at the
    first failing command and saves its variables and functions for the next one."""
    keep = " ".join(names)
    return (
        f"[ -f {state} ] && source {state}\n"
        "set -euo pipefail\n"
        f"{block.code}\n"
        "set +u\n"
        f"{{ declare -p {keep} 2>/dev/null || true; declare -f; }} > {state}.new\n"
        f"mv {state}.new {state}\n"
    )


# Not marked slow (about 45 s): the README is what a new user runs first, so CI runs it.
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_readme_examples_run_in_order_on_a_fresh_install(
    live_server, worker, django_user_model, tmp_path
):
    from rest_framework.authtoken.models import Token

    password = "readme-pass-123"
    admin = django_user_model.objects.create_user("admin", password=password)
    token, _ = Token.objects.get_or_create(user=admin)
    # The examples run from "the checkout's folder": here a scratch folder that has the
    # project's .venv, so the files they write stay out of the repository.
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    env = {
        **os.environ,
        "TOKEN": token.key,
        "PASSWORD": password,
        "STEPS": STEPS,
        "PYTHONPATH": str(REPO_ROOT),
    }
    state = tmp_path / "shell-state.sh"
    names: list[str] = []
    for number, block in enumerate(readme_blocks(README.read_text()), start=1):
        code = block.code.replace(README_URL, live_server.url)
        if block.language == "python":
            command = [sys.executable, "-c", code]
        else:
            names += [n for n in ASSIGNED.findall(code) if n not in names]
            command = ["bash", "-c", shell_script(Block("bash", code, block.line), state, names)]
        run = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT,
        )  # fmt: skip
        print(f"--- README block {number} (line {block.line})\n{run.stdout}")  # shown with -s
        assert run.returncode == 0, (
            f"README block {number} ({block.language}, line {block.line}) exited "
            f"{run.returncode}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n"
            f"{run.stderr[-3000:]}\n--- worker\n{worker.log()[-2000:]}"
        )
    # What the examples left behind is what they said they would.
    from webapp.jobs.models import Job

    jobs = Job.objects.filter(owner=admin)
    assert jobs.filter(kind="train", status="succeeded").count() >= 3
    assert jobs.filter(kind="predict", status="succeeded").count() == 1
    assert not jobs.filter(status="cancelled").exists()  # both cancelled runs were deleted
    assert (tmp_path / "metrics.csv").read_text().startswith("series,step,value,recorded_at")
    assert (tmp_path / "predicted.safetensors").stat().st_size > 0
