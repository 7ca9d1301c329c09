"""fp32 against bf16 autocast for one encoder, on this machine: audio-seconds per second of the
plain transformers forward and of sslstack's encoder, and how far bf16 pooled vectors are from fp32.

The model is random-initialized from a config (no hub access): ``--arch wav2vec2-base`` (94 M
parameters) or ``--arch wavlm-large`` (315 M). ``transformers`` = ``model(x, output_hidden_states=
True)`` under ``torch.autocast`` as users write it; ``sslstack`` = ``HFEncoder.encode`` (masked
pooling of every layer included, and the family fix-ups such as WavLM's contiguous attention input).

    python benchmarks/encoder_dtype.py --arch wavlm-large --batch 8 --seconds 2
    python benchmarks/encoder_dtype.py --arch wav2vec2-base --batch 8 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers as tf

from sslstack.extract.base import EncoderSpec
from sslstack.extract.families import get_family
from sslstack.extract.hf import HFEncoder

ARCHS: dict[str, Callable[[], object]] = {
    "wav2vec2-base": lambda: tf.Wav2Vec2Config(),
    "wavlm-large": lambda: tf.WavLMConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
}


def _best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="wav2vec2-base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-raw", action="store_true", help="time only sslstack's encoder")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = ARCHS[args.arch]()
    model = tf.AutoModel.from_config(cfg).eval()
    fe = tf.Wav2Vec2FeatureExtractor(return_attention_mask=cfg.feat_extract_norm == "layer")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(int(args.seconds * 16000)).astype(np.float32) * 0.1
             for _ in range(args.batch)]
    audio_s = args.batch * args.seconds
    rows = []

    if not args.skip_raw:  # before the encoder installs its fix-ups on the same module
        x = torch.from_numpy(np.stack([fe(w, sampling_rate=16000)["input_values"][0] for w in waves]))
        for dtype in ("fp32", "bf16"):
            def raw(dtype: str = dtype) -> None:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bf16"):
                    model(x, output_hidden_states=True)
            rows.append({"path": "transformers", "dtype": dtype,
                         "audio_s_per_s": round(audio_s / _best(raw, args.repeats), 2)})
            print(json.dumps(rows[-1]), flush=True)

    spec = EncoderSpec(f"random:{args.arch}", "random", 16000, cfg.model_type, lambda *a, **k: None)
    pooled = {}
    for dtype in ("fp32", "bf16"):
        enc = HFEncoder(model, fe, get_family(cfg.model_type), spec, dtype=dtype)
        pooled[dtype] = enc.encode(waves, ("mean", "std"))
        t = _best(lambda enc=enc: enc.encode(waves, ("mean", "std")), args.repeats)
        row = {"path": "sslstack", "dtype": dtype, "audio_s_per_s": round(audio_s / t, 2)}
        if dtype == "bf16":
            for p in ("mean", "std"):
                a = np.stack([o[p] for o in pooled["fp32"]])
                b = np.stack([o[p] for o in pooled["bf16"]])
                row[f"rel_l2_{p}"] = round(float(np.linalg.norm(b - a) / np.linalg.norm(a)), 5)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"arch": args.arch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                      "batch": args.batch, "seconds": args.seconds, "threads": torch.get_num_threads(),
                      "results": rows}))


if __name__ == "__main__":
    main()
