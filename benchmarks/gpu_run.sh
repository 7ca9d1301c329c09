#!/usr/bin/env bash
# On the lent GPU machine (device tool, carry [".whl"]): install the carried wheels, then run the
# extraction benchmark with sslstack from this checkout. Arguments go to benchmarks/extract.py.
#   bash benchmarks/gpu_run.sh --device cuda --hours 4.5 --arch wavlm-large
# It prints the set-up (GPU, the bf16 peak used, torch / CUDA / transformers versions, the batch
# seconds chosen per family) and the table, and writes $OUT/bench.json for the device tool.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 benchmarks/extract.py --json "${OUT:-/tmp}/bench.json" "$@"
