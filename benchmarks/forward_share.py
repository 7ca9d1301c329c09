"""Share of extraction wall time spent outside the model's forward (CPU-measurable pipeline cost).

Builds the demo's tiny random-init WavLM (examples/make_tiny_encoder.py), extracts the bundled
``examples/fsdd-mini/train.csv`` (400 clips) into a fresh workspace ``--repeats`` times, and times
the model's forward with hooks on the transformers module (whatever calls it). The share outside
the forward is what the pipelined engine shrinks: decoding, normalisation, padding, pooling and
store writes either overlap the forward or are gone.

    python benchmarks/forward_share.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def _hook_forward(totals: dict[str, float]) -> None:
    """Time every top-level forward of a transformers PreTrainedModel."""
    import transformers

    orig = transformers.PreTrainedModel.__call__

    def timed(self, *a, **k):  # type: ignore[no-untyped-def]
        if totals.get("depth", 0):
            return orig(self, *a, **k)
        totals["depth"] = 1
        t0 = time.perf_counter()
        try:
            return orig(self, *a, **k)
        finally:
            totals["forward"] += time.perf_counter() - t0
            totals["depth"] = 0

    transformers.PreTrainedModel.__call__ = timed  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "examples" / "fsdd-mini" / "train.csv")
    args = ap.parse_args()
    from make_tiny_encoder import main as make_tiny

    from sslstack import extract

    # the modules a CLI process imports anyway (sslstack imports them lazily since the CLI start-up
    # work: imported here, so the first timed run does not count pandas' import against the
    # pipeline)
    for name in ("sslstack.extract.runner", "sslstack.cache.store", "pandas"):
        __import__(name)
    root = Path(tempfile.mkdtemp(prefix="sslstack-share-"))
    model = root / "tiny-wavlm"
    make_tiny(str(model))
    totals = {"forward": 0.0, "depth": 0}
    _hook_forward(totals)
    rows = []
    for i in range(args.repeats):
        totals["forward"] = 0.0
        t0 = time.perf_counter()
        r = extract(
            args.data,
            str(model),
            workspace=root / f"ws{i}",
            pools=("mean", "std"),
            workers=args.workers,
        )
        wall = time.perf_counter() - t0
        rows.append(
            {
                "wall_s": wall,
                "forward_s": totals["forward"],
                "outside_share": 1 - totals["forward"] / wall,
                "items": r.computed,
                "audio_s_per_s": r.audio_seconds / wall,
            }
        )
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
    print("| run | wall s | forward s | share outside forward | audio-s/s |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(
            f"| {i} | {r['wall_s']:.2f} | {r['forward_s']:.2f} | {r['outside_share']:.1%} "
            f"| {r['audio_s_per_s']:.1f} |"
        )
    med = statistics.median(r["outside_share"] for r in rows)
    print(f"median share outside the forward: {med:.1%}")


if __name__ == "__main__":
    main()
