"""A fully cached ``sslstack extract`` rerun: end-to-end wall time, and what the hash memo saves.

Extracts ``--data`` with logmel once per source tree (each in its own workspace), then times
``--runs`` reruns in fresh interpreters (the median; Python start-up included), and, in this
process, hashing every file with the memo warm against hashing them all::

    python benchmarks/cached_rerun.py --runs 5
    python benchmarks/cached_rerun.py --runs 5 --baseline-src /tmp/old/src   # same run, old code
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _extract(src: Path, data: Path, ws: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, the seconds ``extract`` itself reports) of one CLI run. CPU
    seconds are what the run costs on an idle machine (it is one thread once cached); wall
    seconds on a shared machine also hold the waits for a core."""
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "sslstack", "extract", "--model", "logmel", "--data", str(data)]
    t0, c0 = time.perf_counter(), _cpu()
    p = subprocess.run([*cmd, "-w", str(ws), "--pool", "mean,std,max"], env=env, check=True,
                       capture_output=True, text=True)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    said = re.search(r"failed in ([0-9.]+) s", p.stderr + p.stdout)
    return wall, cpu, float(said.group(1)) if said else float("nan")


def rerun_seconds(src: Path, data: Path, ws: Path, runs: int) -> tuple[float, ...]:
    """(first run wall, then medians over the cached reruns: wall, CPU, inside ``extract``)
    with the code in ``src``."""
    first = _extract(src, data, ws)[0]
    reruns = [_extract(src, data, ws) for _ in range(runs)]
    return (first, *(statistics.median(r[k] for r in reruns) for k in range(3)))


def hashing_seconds(data: Path, ws: Path) -> tuple[float, float, int]:
    """(memo warm, no memo) seconds of the content hashes of every file of ``data``."""
    sys.path.insert(0, str(REPO / "src"))
    from sslstack.content import MEMO_NAME, content_hashes
    from sslstack.manifest import read_manifest
    from sslstack.workspace import Workspace

    paths = read_manifest(data).frame["path"].tolist()
    w = Workspace.at(ws)
    content_hashes(w, paths)
    t0 = time.perf_counter()
    content_hashes(w, paths)
    warm = time.perf_counter() - t0
    (w.root / MEMO_NAME).unlink()
    t0 = time.perf_counter()
    content_hashes(w, paths)
    return warm, time.perf_counter() - t0, len(paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/fsdd/metadata.csv")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-src", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sslstack-rerun-"))
    try:
        trees = [("this tree", REPO / "src")]
        if args.baseline_src:
            trees.insert(0, ("baseline", args.baseline_src))
        for label, src in trees:
            ws = root / label.replace(" ", "-")
            first, wall, cpu, inside = rerun_seconds(src, args.data, ws, args.runs)
            print(
                f"{label}: first extract {first:.1f} s; cached rerun {wall:.2f} s wall, "
                f"{cpu:.2f} s CPU, {inside:.2f} s inside extract() (medians of {args.runs})"
            )
        warm, cold, n = hashing_seconds(args.data, root / "this-tree")
        print(f"hashes of {n} files: memo warm {warm * 1000:.0f} ms, no memo {cold * 1000:.0f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
