#!/usr/bin/env bash
# The real-size audit on a GPU machine, in one command sized to finish in under 8 minutes on an
# H100/H200: random-weight MedGemma-4B- and Nemotron-3-Nano-4B-shaped checkpoints are built on the GPU,
# then loaded and run through our own backends (bench/real_size.py). Writes its JSON and a log into $OUT.
#
# Here, once:   bench/device_wheels.sh                 (pydantic & co. as cp312 wheels, into .whl/)
# There:        device run, carry [".whl"], command "bash bench/device_run.sh", timeout ~540 s
# Dry run here: bash bench/device_run.sh --smoke       (tiny models on CPU: proves the script)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
LOG="$OUT/device_run.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"

if [ "${1:-}" = "--smoke" ]; then
  [ -x .venv/bin/python ] && PY=.venv/bin/python
  set -e
  "$PY" bench/real_size.py --models "$OUT/models" --smoke --device cpu --repeats 2 --batch 2 --studies 4 \
    --ground-tokens 16 --reason-tokens 12 --answer-tokens 8 --out "$OUT/real_size-smoke.json" 2>&1 | tee "$LOG"
  echo "smoke run wrote $OUT/real_size-smoke.json"
  exit 0
fi

if ! "$PY" -c "import pydantic" 2>/dev/null; then
  [ -d .whl ] || { echo "no .whl/ here: run bench/device_wheels.sh first and carry .whl" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$LOG"

MODELS="${MODELS:-/tmp/cxr-real-size}"
# 1. the default settings: batch-1 audits (p50/p90 over 6), then a 16-study worklist from 8 threads
timeout 330 "$PY" bench/real_size.py --models "$MODELS" --device cuda --repeats 6 --warmup 1 \
  --batch 8 --studies 16 --out "$OUT/real_size-gpu.json" 2>&1 | tee -a "$LOG"
# 2. the same audit with a static KV cache and torch.compile on the grounder, batch 1 only
timeout 150 "$PY" bench/real_size.py --models "$MODELS" --device cuda --repeats 4 --warmup 2 \
  --batch 0 --static-cache --compile --out "$OUT/real_size-gpu-compiled.json" 2>&1 | tee -a "$LOG"
date -u | tee -a "$LOG"
ls -la "$OUT"
