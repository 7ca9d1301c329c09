"""The encoder-internal choices of ``HFEncoder``, each against its alternative, on one machine:

* ``bf16``: autocast (the CPU default) against bf16 weights (the CUDA default), and autocast
  without the fp32 grouped convolutions (the fast but, on some CPUs, wrong path);
* ``attention``: sslstack's attention (SDPA; WavLM's gated-bias SDPA forward) against eager;
* ``batching``: clips of mixed lengths in exact padded batches (``pad``) against forwards of
  identical lengths only (``bucket``, what data2vec-audio, the conformer, SEW and SEW-D had).

Random-init models from configs (no hub access). Variants run interleaved for ``--repeats``
rounds; the median audio-seconds per second is reported, with each variant's pooled means'
relative L2 distance from the first variant's.

    python benchmarks/encoder_kernels.py --compare bf16 --arch wav2vec2-base
    python benchmarks/encoder_kernels.py --compare attention --arch wavlm-large --dtype bf16
    python benchmarks/encoder_kernels.py --compare batching --arch data2vec-audio-base
    python benchmarks/encoder_kernels.py --compare attention --arch wavlm-large --dtype bf16 \
        --device cuda --batch 32 --seconds 10
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
from typing import Any

import numpy as np
import torch
import transformers as tf

from benchmarks.extract import ARCHS as _EXTRACT_ARCHS  # noqa: E402
from benchmarks.extract import make_config  # noqa: E402
from sslstack.extract import hf_model as hf_encoder
from sslstack.extract.base import EncoderSpec
from sslstack.extract.families import FAMILIES, Family
from sslstack.extract.hf_model import HFEncoder

DEVICE = ["cpu"]
ARCHS: dict[str, Callable[[], Any]] = {
    **{a: (lambda a=a: make_config(a)) for a in _EXTRACT_ARCHS},
    "data2vec-audio-base": lambda: tf.Data2VecAudioConfig(),
    "sew-d-base": lambda: tf.SEWDConfig(),
    "conformer-base": lambda: tf.Wav2Vec2ConformerConfig(),
}


def _encoder(model: Any, fe: Any, dtype: str, **change: Any) -> HFEncoder:
    """An HFEncoder over a copy of ``model``; ``change``: ``mode`` (bf16 mode forced),
    ``grouped_fp32=False``, ``attention="eager"``, ``batching``."""
    model = copy.deepcopy(model)
    family: Family = FAMILIES.get(model.config.model_type)
    if change.get("attention") in ("eager", "flex"):
        family = _eager_family(family, change["attention"] == "flex")
    spec = EncoderSpec("random", "random", 16000, model.config.model_type, lambda *a, **k: None)
    saved = hf_encoder.bf16_mode, hf_encoder.fp32_grouped_convs
    if "mode" in change:
        hf_encoder.bf16_mode = lambda device: change["mode"]
    if change.get("grouped_fp32") is False:
        hf_encoder.fp32_grouped_convs = lambda m: []
    try:
        enc = HFEncoder(model, fe, family, spec, dtype=dtype, device=DEVICE[0])
    finally:
        hf_encoder.bf16_mode, hf_encoder.fp32_grouped_convs = saved
    if change.get("attention") == "eager" and enc.model.config._attn_implementation != "eager":
        enc.model.set_attn_implementation("eager")
    if "batching" in change:
        enc.batching = change["batching"]
    return enc


def _eager_family(family: Family, flex: bool = False) -> Family:
    """The family without the WavLM SDPA forward (its other fix-ups kept), or (``flex``) with
    the opt-in FlexAttention forward instead."""
    import dataclasses

    from sslstack.extract import families
    from sslstack.extract.attention import wavlm_sdpa

    if family.model_type != "wavlm":
        return family
    if flex:
        return dataclasses.replace(
            family, prepare=lambda m: (families._wav2vec2_prepare(m), wavlm_sdpa(m, flex=True))
        )
    return dataclasses.replace(
        family,
        prepare=lambda m: (families._wav2vec2_prepare(m), families._wavlm_contiguous(m)),
    )


def _variants(args: argparse.Namespace, model: Any, fe: Any) -> dict[str, HFEncoder]:
    if args.compare == "bf16":
        return {
            "fp32": _encoder(model, fe, "fp32"),
            "bf16 autocast (CPU default)": _encoder(model, fe, "bf16", mode="autocast"),
            "bf16 autocast, grouped convs in bf16": _encoder(
                model, fe, "bf16", mode="autocast", grouped_fp32=False
            ),
            "bf16 weights (CUDA default)": _encoder(model, fe, "bf16", mode="weights"),
        }
    if args.compare == "attention":
        out = {
            "eager attention": _encoder(model, fe, args.dtype, attention="eager"),
            "sslstack attention": _encoder(model, fe, args.dtype),
        }
        if args.device.startswith("cuda") and model.config.model_type == "wavlm":
            out["FlexAttention (opt-in, compiled)"] = _encoder(
                model, fe, args.dtype, attention="flex"
            )
        return out
    return {
        "bucket (identical lengths)": _encoder(model, fe, args.dtype, batching="bucket"),
        "pad (exact padded batches)": _encoder(model, fe, args.dtype, batching="pad"),
    }


def _waves(args: argparse.Namespace) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    if args.compare == "batching":  # FSDD-like: every clip its own length
        secs = rng.uniform(0.5 * args.seconds, 1.5 * args.seconds, args.batch)
    else:
        secs = np.full(args.batch, args.seconds)
    return [rng.standard_normal(int(s * 16000)).astype(np.float32) * 0.1 for s in secs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--compare", choices=("bf16", "attention", "batching"), default="bf16")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="wav2vec2-base")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the encode returns to the host)")
    args = ap.parse_args()
    DEVICE[0] = args.device

    torch.manual_seed(0)
    cfg = ARCHS[args.arch]()
    model = tf.AutoModel.from_config(cfg).eval()
    layer_fe = getattr(cfg, "feat_extract_norm", "layer") == "layer"
    fe = tf.Wav2Vec2FeatureExtractor(return_attention_mask=layer_fe)
    waves = _waves(args)
    encoders = _variants(args, model, fe)
    for enc in encoders.values():
        enc.encode(waves[:2], ("mean",))  # warm-up
    times: dict[str, list[float]] = {k: [] for k in encoders}
    for _ in range(args.repeats):
        for k, enc in encoders.items():
            t = time.perf_counter()
            enc.encode(waves, ("mean",))
            times[k].append(time.perf_counter() - t)
    audio = sum(len(w) for w in waves) / 16000
    pooled = {
        k: np.stack([o["mean"] for o in e.encode(waves, ("mean",))]) for k, e in encoders.items()
    }
    first = next(iter(pooled.values()))
    print(json.dumps({"arch": args.arch, "compare": args.compare, "dtype": args.dtype,
                      "batch": args.batch, "audio_s": round(audio, 1),
                      "threads": torch.get_num_threads()}))  # fmt: skip
    print("| variant | audio-s/s (median) | rounds | rel. L2 vs first |")
    print("|---|---|---|---|")
    for k, ts in times.items():
        rel = float(np.linalg.norm(pooled[k] - first) / np.linalg.norm(first))
        rounds = ", ".join(f"{audio / t:.1f}" for t in ts)
        print(f"| {k} | {audio / float(np.median(ts)):.2f} | {rounds} | {rel:.1e} |")


if __name__ == "__main__":
    main()
