"""speech-embedding's ONNX Runtime threads: sslstack's setting (one intra-op thread, no
spin-waiting) against onnxruntime's default (one spinning thread per core), both on the sliding
graph, alternating in one process on the same FSDD clips.

    python benchmarks/se_threads.py --files 40 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_encoders import FSDD, clips  # noqa: E402

from sslstack.extract import pretrained  # noqa: E402
from sslstack.extract.resolve import resolve_encoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    waves = clips(FSDD, "fsdd", args.files, 16000)
    audio = sum(map(len, waves)) / 16000
    encoders = {}
    for name, threads in (("1 thread, no spinning", 1), ("onnxruntime's default", None)):
        pretrained.SE_THREADS = threads  # read when the encoder loads
        encoders[name] = resolve_encoder("speech-embedding").load()
        encoders[name].encode(waves[:1], ("mean",))
    for r in range(args.rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            for i in range(0, len(waves), 16):
                enc.encode(waves[i : i + 16], ("mean", "std", "max"))
            print(f"round {r}: {name}: {audio / (time.perf_counter() - t0):.1f} audio-s/s")


if __name__ == "__main__":
    main()
