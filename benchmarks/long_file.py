"""Memory of extraction on long recordings: peak RSS must not grow with the file's length.

Two modes, each file extracted in a fresh process that reports its peak resident memory:

* ``--minutes``: synthetic 44.1 kHz stereo recordings with ``--window 10 --hop 5``;
* ``--hours``: synthetic 16 kHz mono recordings *without* ``--window`` (one vector per file);
  the engine streams them in the encoder's chunks. ``--limit-kb 8000000`` runs each child under
  that address-space limit (``ulimit -v``). ``--src`` runs another checkout's ``src`` (the
  code before a change, for a before/after in one run).

    python benchmarks/long_file.py --minutes 10 120
    python benchmarks/long_file.py --hours 1 4 10 --limit-kb 8000000
    python benchmarks/long_file.py --hours 1 4 10 --model /tmp/tiny-wavlm
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = """
import json, resource, sys, time
from sslstack import extract
kw = json.loads(sys.argv[4])
t = time.perf_counter()
r = extract(sys.argv[1], sys.argv[2], workspace=sys.argv[3], **kw)
print(json.dumps({"seconds": time.perf_counter() - t, "computed": r.computed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_long(path: Path, minutes: float, sr: int = 44100, channels: int = 2) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(sr * 10) / sr
    tone = 0.2 * np.sin(2 * np.pi * 440 * t)[:, None]
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, subtype="PCM_16") as fh:
        for _ in range(int(minutes * 60 / 10)):
            noise = 0.05 * rng.standard_normal((sr * 10, channels), dtype=np.float32)
            fh.write((tone + noise).astype(np.float32))


def run_child(
    data: Path, model: str, ws: Path, settings: dict, limit_kb: int | None, src: str | None
) -> dict:
    def limit() -> None:
        if limit_kb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_kb * 1024, limit_kb * 1024))

    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), model, str(ws), json.dumps(settings)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env=env,
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="*", default=[])
    ap.add_argument("--hours", type=float, nargs="*", default=[])
    ap.add_argument("--model", default="logmel")
    ap.add_argument("--limit-kb", type=int, default=None, help="ulimit -v for each child")
    ap.add_argument("--src", default=None, help="PYTHONPATH of the children (another checkout)")
    ap.add_argument("--root", default=None, help="where the recordings are written (kept)")
    args = ap.parse_args()
    if not args.minutes and not args.hours:
        args.minutes = [10, 120]
    root = Path(args.root or tempfile.mkdtemp(prefix="sslstack-long-"))
    root.mkdir(parents=True, exist_ok=True)
    limit = f" under ulimit -v {args.limit_kb}" if args.limit_kb else ""
    print(f"model {args.model}{limit}; code: {args.src or 'this checkout'}")
    print("| recording | file size | mode | seconds | peak RSS |")
    print("|---|---|---|---|---|")
    jobs = [(m, "min", {"window": 10, "hop": 5}) for m in args.minutes]
    jobs += [(h, "h", {}) for h in args.hours]
    for amount, unit, settings in jobs:
        d = root / f"{amount:g}{unit}"
        wav = d / "rec.wav"
        if not wav.exists():
            d.mkdir(exist_ok=True)
            if unit == "min":
                write_long(wav, amount)
            else:
                write_long(wav, amount * 60, sr=16000, channels=1)
        size = wav.stat().st_size / 2**20
        ws = Path(tempfile.mkdtemp(prefix="ws-", dir=root))
        res = run_child(
            d,
            args.model,
            ws,
            {"pools": ["mean", "std", "max"], **settings},
            args.limit_kb,
            args.src,
        )
        what = "44.1 kHz stereo" if unit == "min" else "16 kHz mono"
        mode = "--window 10 --hop 5" if settings else "no --window"
        if "error" in res:
            print(
                f"| {amount:g} {unit}, {what} | {size:.0f} MiB | {mode} | failed: "
                f"{res['error']} | |",
                flush=True,
            )
            continue
        print(
            f"| {amount:g} {unit}, {what} | {size:.0f} MiB | {mode} | {res['seconds']:.1f} | "
            f"{res['peak_rss_mb']:.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
