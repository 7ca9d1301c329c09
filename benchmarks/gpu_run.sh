#!/usr/bin/env bash
# On the lent GPU machine (device tool, carry [".whl"]): install the carried wheels, then run the
# extraction benchmark with sslstack from this checkout. Arguments go to benchmarks/extract.py.
#   bash benchmarks/gpu_run.sh --device cuda --hours 4.5 --arch wavlm-large
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src:$PWD" PYTHONUNBUFFERED=1
python3 benchmarks/extract.py "$@" 2> >(tee "${OUT:-/tmp}/bench.json" >&2)
