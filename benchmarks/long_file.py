"""Memory of windowed extraction on long recordings: peak RSS must not grow with file length.

Writes synthetic 44.1 kHz stereo recordings of several lengths (streamed to disk), extracts each
with ``--window 10 --hop 5`` in a fresh process, and reports the peak resident memory.

    python benchmarks/long_file.py --minutes 10 120
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = """
import json, resource, sys, time
from sslstack import extract
t = time.perf_counter()
r = extract(sys.argv[1], sys.argv[2], workspace=sys.argv[3], window=10, hop=5,
            pools=("mean", "max"))
print(json.dumps({"seconds": time.perf_counter() - t, "computed": r.computed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_long(path: Path, minutes: float, sr: int = 44100) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype="PCM_16") as fh:
        for _ in range(int(minutes * 60 / 10)):
            t = np.arange(sr * 10) / sr
            block = 0.2 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * rng.standard_normal(
                (sr * 10, 2)
            )
            fh.write(block.astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 120])
    ap.add_argument("--model", default="logmel")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sslstack-long-"))
    print("| recording | file size | windows | seconds | peak RSS |")
    print("|---|---|---|---|---|")
    for m in args.minutes:
        d = root / f"m{m:g}"
        d.mkdir()
        write_long(d / "rec.wav", m)
        size = (d / "rec.wav").stat().st_size / 2**20
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(d), args.model, str(root / f"ws{m:g}")],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        n_win = int(np.ceil(max(m * 60 - 10, 0) / 5)) + 1
        print(
            f"| {m:g} min, 44.1 kHz stereo | {size:.0f} MiB | {n_win} | {res['seconds']:.1f} | "
            f"{res['peak_rss_mb']:.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
