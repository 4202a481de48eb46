"""Without a CUDA device the GPU tests are collected and skipped, never failed; the prepared
device script at least parses."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.paths import ROOT


def test_without_cuda_the_gpu_tests_are_collected_and_skipped():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
         "tests/gpu", "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "5 skipped" in done.stdout, done.stdout[-3000:]
    assert "needs a CUDA device" in done.stdout


def test_the_gpu_check_script_parses():
    done = subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
