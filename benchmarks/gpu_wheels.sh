#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for benchmarks/extract.py (it has torch, transformers, h5py,
# pandas, rich, typer, nvidia-ml-py), for its Python 3.12, into .whl/ (ignored by git). Run here
# once; then carry .whl with the device tool and start the command with benchmarks/gpu_run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  plat+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" -d .whl soundfile==0.13.1 soxr==0.5.0.post1 cffi==1.17.1 pycparser==2.22
ls -la .whl
