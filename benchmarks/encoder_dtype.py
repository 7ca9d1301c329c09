"""fp32 against bf16 autocast for one encoder, on this machine: audio-seconds per second of the
plain transformers forward and of sslstack's encoder, and how far bf16 pooled vectors are from fp32.

The model is random-initialized from a config (no hub access): ``--arch wav2vec2-base`` (94 M
parameters) or ``--arch wavlm-large`` (315 M). ``transformers`` = ``model(x,
output_hidden_states=True)`` under ``torch.autocast``, as users write it; ``sslstack`` =
``HFEncoder.encode`` (masked pooling of every layer included, with the family fix-ups such as
WavLM's contiguous attention input). The four variants run interleaved for ``--repeats`` rounds
(so load from other jobs hits all of them) and the median rate is reported.

    python benchmarks/encoder_dtype.py --arch wavlm-large --batch 8 --seconds 2
    python benchmarks/encoder_dtype.py --arch wav2vec2-base --batch 8 --seconds 4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import argparse
import copy
import json
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers as tf

from benchmarks.extract import ARCHS, make_config  # noqa: E402  (one definition of the configs)
from sslstack.extract.base import EncoderSpec
from sslstack.extract.families import FAMILIES
from sslstack.extract.hf_model import HFEncoder


def _raw(model: torch.nn.Module, x: torch.Tensor, dtype: str) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
            return model(x, output_hidden_states=True)

    return run


def _rel_l2(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]], pool: str) -> float:
    x, y = np.stack([o[pool] for o in a]), np.stack([o[pool] for o in b])
    return round(float(np.linalg.norm(y - x) / np.linalg.norm(x)), 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="wav2vec2-base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = make_config(args.arch)
    model = tf.AutoModel.from_config(cfg).eval()
    fe = tf.Wav2Vec2FeatureExtractor(return_attention_mask=cfg.feat_extract_norm == "layer")
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(args.batch)]
    x = torch.from_numpy(np.stack([fe(w, sampling_rate=16000)["input_values"][0] for w in waves]))

    runs: dict[tuple[str, str], Callable[[], object]] = {}
    for dtype in ("fp32", "bf16"):  # a copy: the encoder installs its fix-ups on its module
        runs[("transformers", dtype)] = _raw(copy.deepcopy(model), x, dtype)
    spec = EncoderSpec(f"random:{args.arch}", "random", 16000, cfg.model_type, lambda *a, **k: None)
    encoders = {
        d: HFEncoder(model, fe, FAMILIES[cfg.model_type], spec, dtype=d) for d in ("fp32", "bf16")
    }
    for d, enc in encoders.items():
        runs[("sslstack", d)] = lambda enc=enc: enc.encode(waves, ("mean", "std"))
    for fn in runs.values():
        fn()  # warm-up
    times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)

    audio_s = args.batch * args.seconds
    rows = [
        {
            "path": p,
            "dtype": d,
            "audio_s_per_s": round(audio_s / float(np.median(ts)), 2),
            "rounds": [round(audio_s / t, 2) for t in ts],
        }
        for (p, d), ts in times.items()
    ]
    pooled = {d: e.encode(waves, ("mean", "std")) for d, e in encoders.items()}
    result = {
        "arch": args.arch,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "batch": args.batch,
        "seconds": args.seconds,
        "threads": torch.get_num_threads(),
        "results": rows,
        "bf16_rel_l2": {p: _rel_l2(pooled["fp32"], pooled["bf16"], p) for p in ("mean", "std")},
    }
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
