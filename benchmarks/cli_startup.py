"""Start-up time of the command line: ``sslstack --version``, ``--help`` and ``fit-head --help``.

Each command runs ``--runs`` times in a fresh interpreter; the median wall time is reported, with
the package imported from ``--src`` (default: this checkout's ``src``), so an older checkout can
be measured the same way (``git archive <commit> src | tar -x -C /tmp/old``).

    python benchmarks/cli_startup.py --runs 7
    python benchmarks/cli_startup.py --runs 7 --src /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (("--version",), ("--help",), ("fit-head", "--help"))


def time_command(args: tuple[str, ...], src: Path, runs: int) -> float:
    """Median wall seconds of ``python -m sslstack ARGS`` over ``runs`` fresh interpreters."""
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120"}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sslstack", *args], env=env, capture_output=True, check=True
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    a = ap.parse_args()
    for args in COMMANDS:
        print(f"sslstack {' '.join(args):<18} {time_command(args, a.src, a.runs):6.2f} s")


if __name__ == "__main__":
    main()
