#!/usr/bin/env bash
# GPU readiness (issue 10, item 10): one prepared check for when a CUDA machine is lent.
#
#   bash bench/gpu_check.sh            # results under $OUT, else bench/results/gpu_check/
#
# In under 8 minutes it records the device, runs the tests marked `gpu` (CUDA against CPU for a
# NiNo nowcast with the published checkpoint, a GHN prediction and a Hugging Face model; a
# NiNo train job and a Hugging Face config train job on `cuda` through a real Celery worker,
# on the test settings' SQLite database and filesystem broker, so no service is needed), and
# times a few steps of the `large` GHN meta-training preset and builds the 1.1B Llama parameter
# graph (host memory). Without CUDA the tests are collected and skipped and the script still
# exits 0, saying so in summary.json.
#
# Inputs a bare machine lacks: the published NiNo checkpoints live in ../shared, which does not
# travel with the checkout; copy ../shared/pretrained/nino into .gpu_carry/nino (ignored via
# .git/info/exclude) and carry it, or set NINO_CHECKPOINT_DIR. PYTHON picks the interpreter
# (default: .venv/bin/python, else python3). Each step has its own time limit; one failing
# step does not stop the others.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu_check}"
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -z "${NINO_CHECKPOINT_DIR:-}" ] && [ -d .gpu_carry/nino ]; then
  export NINO_CHECKPOINT_DIR="$PWD/.gpu_carry/nino"
fi
# The test settings' own database and broker: nothing outside the machine is reached.
unset DATABASE_URL CELERY_BROKER_URL
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
started=$(date +%s)
declare -A status

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  status[$name]=$rc
  echo "   exit $rc; last lines:"
  tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
}

step environment 60 "$PYTHON" - <<'PY'
import json, os, platform, subprocess
import torch
info = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda_available": torch.cuda.is_available(),
    "cuda_version": torch.version.cuda,
    "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    "nino_checkpoint_dir": os.environ.get("NINO_CHECKPOINT_DIR", "(default ../shared)"),
}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError) as error:
    info["nvidia_smi"] = f"unavailable: {error}"
print(json.dumps(info, indent=2))
with open(os.path.join(os.environ.get("OUT", "bench/results/gpu_check"), "environment.json"),
          "w") as handle:
    json.dump(info, handle, indent=2)
PY

cuda=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)

step gpu_tests 330 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs \
  --junitxml="$OUT/gpu_tests.xml"

if [ "$cuda" = "1" ]; then
  step ghn_large_throughput 120 "$PYTHON" - <<'PY'
# The `large` preset's GHN and architectures, a few meta-training steps on random images (the
# throughput does not depend on the pixels). meta_train runs where its tensors are: it has no
# device option, so this measures the host's CPUs; the number says what a GPU port would beat.
import dataclasses, json, os, time
import torch
from workers.ghn.metatrain import PRESETS, meta_train
torch.set_num_threads(os.cpu_count() or 1)
steps = 3
config = dataclasses.replace(PRESETS["large"], steps=steps, val_every=0, warmup=1)
x = torch.randn(2048, 1, 28, 28)
y = torch.randint(0, 10, (2048,))
t0 = time.perf_counter()
ghn, history = meta_train(config, x, y, x[:256], y[:256], log=lambda line: print(line))
seconds = time.perf_counter() - t0
result = {"preset": "large", "device": "cpu (metatrain has no device option)",
          "threads": torch.get_num_threads(), "steps": steps,
          "seconds_per_step": round(seconds / steps, 3),
          "archs_per_second": round(steps * config.meta_batch / seconds, 3)}
print(json.dumps(result))
with open(os.path.join(os.environ.get("OUT", "bench/results/gpu_check"),
                       "ghn_large_throughput.json"), "w") as handle:
    json.dump(result, handle, indent=2)
PY
  # The 1.1B Llama parameter graph (issue 10, item 7) needs ~25 GB of host memory, more than
  # the 24 GB development VM has; the lent machine has 128 GB. Its JSON row ends the log.
  step graph_llama_1b 120 "$PYTHON" bench/graphs.py --one llama-22L-d2048-1.1B
else
  echo "== no CUDA device: the gpu tests were skipped; no throughput measured"
fi

OUT="$OUT" CUDA="$cuda" ELAPSED=$(( $(date +%s) - started )) \
  STATUS="$(for k in "${!status[@]}"; do echo "$k=${status[$k]}"; done)" "$PYTHON" - <<'PY'
import json, os
status = dict(line.split("=") for line in os.environ["STATUS"].split() if "=" in line)
summary = {"cuda": os.environ["CUDA"] == "1", "seconds": int(os.environ["ELAPSED"]),
           "steps": {name: int(rc) for name, rc in sorted(status.items())}}
summary["ok"] = all(rc == 0 for rc in summary["steps"].values())
print(json.dumps(summary, indent=2))
with open(os.path.join(os.environ["OUT"], "summary.json"), "w") as handle:
    json.dump(summary, handle, indent=2)
PY
