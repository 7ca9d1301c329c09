"""Extraction throughput: sslstack against the straightforward loop users write today.

Both run in the same process on the same files. The model is a random-initialized encoder built
from a config (no hub access needed): ``--arch wav2vec2-base`` (94 M parameters) or
``--arch wavlm-large`` (315 M). The baseline is, per file: decode, feature extractor, forward with
all hidden states, mean of each layer, ``np.save``. Both outputs are compared, and the ratio of
audio-seconds per second is reported.

    python benchmarks/extract.py --files 200 --arch wav2vec2-base --dtype fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers as tf

from sslstack import extract, load_embeddings
from sslstack.audio import load_audio

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"

ARCHS = {
    "wav2vec2-base": lambda: tf.Wav2Vec2Config(),  # 12 layers, 768 wide, group-norm conv stack
    "wavlm-large": lambda: tf.WavLMConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
    ),
}


def build_model(arch: str, root: Path) -> Path:
    torch.manual_seed(0)
    cfg = ARCHS[arch]()
    model = tf.AutoModel.from_config(cfg).eval()
    out = root / arch
    model.save_pretrained(out)
    layer_fe = getattr(cfg, "feat_extract_norm", "group") == "layer"
    tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=layer_fe
    ).save_pretrained(out)
    return out


def manifest(n: int, root: Path, data: Path) -> Path:
    meta = pd.read_csv(data / "metadata.csv").sample(n=n, random_state=0)
    meta["path"] = [str((data / p).resolve()) for p in meta["path"]]
    path = root / "bench.csv"
    meta.to_csv(path, index=False)
    return path


def naive(model_dir: Path, paths: list[str], out: Path) -> tuple[float, dict[str, np.ndarray]]:
    """The loop a user writes: load the model, then one file at a time: decode, feature
    extractor, forward with all hidden states, mean of each layer, np.save. Timed from the model
    load, as sslstack's run is (which also hashes the files and writes the store)."""
    t0 = time.perf_counter()
    fe = tf.AutoFeatureExtractor.from_pretrained(model_dir)
    model = tf.AutoModel.from_pretrained(model_dir).eval()
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    with torch.inference_mode():
        for i, p in enumerate(paths):
            x = load_audio(p, 16000)
            inputs = fe(x, sampling_rate=16000, return_tensors="pt")
            hs = model(**inputs, output_hidden_states=True).hidden_states
            vec = torch.stack([h.mean(dim=1)[0] for h in hs]).numpy()
            np.save(out / f"{i}.npy", vec)
            res[p] = vec
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="wav2vec2-base", choices=list(ARCHS))
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--data", type=Path, default=FSDD)
    ap.add_argument("--dtype", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="sslstack-bench-"))
    model_dir = build_model(args.arch, root)
    man = manifest(args.files, root, args.data)
    paths = pd.read_csv(man)["path"].tolist()
    audio = sum(len(load_audio(p, 16000)) for p in paths) / 16000
    rows = []
    base_rate = None
    ref = None
    if not args.skip_naive:
        t, ref = naive(model_dir, paths, root / "naive")
        base_rate = audio / t
        rows.append({"method": "naive loop fp32", "seconds": t, "audio_s_per_s": base_rate})
    for dtype in args.dtype:
        ws = root / f"ws-{dtype}"
        t0 = time.perf_counter()
        r = extract(
            man,
            str(model_dir),
            workspace=ws,
            dtype=dtype,
            storage="float32",
            batch_seconds=args.batch_seconds,
            device=args.device,
        )
        t = time.perf_counter() - t0
        row = {
            "method": f"sslstack {dtype}",
            "seconds": t,
            "audio_s_per_s": audio / t,
            "computed": r.computed,
        }
        if ref is not None:
            ids, _ = load_embeddings(str(model_dir), 0, "mean", workspace=ws, dtype=dtype)
            n_layers = len(next(iter(ref.values())))
            ours = np.stack(
                [
                    load_embeddings(
                        str(model_dir), layer, "mean", workspace=ws, ids=ids, dtype=dtype
                    )[1]
                    for layer in range(n_layers)
                ],
                1,
            )
            theirs = np.stack([ref[i] for i in ids])
            rel = np.linalg.norm(ours - theirs, axis=-1) / np.maximum(
                np.linalg.norm(theirs, axis=-1), 1e-12
            )
            row["rel_l2_vs_naive_max"] = float(rel.max())
            row["rel_l2_vs_naive_mean"] = float(rel.mean())
            row["ratio_vs_naive"] = (audio / t) / base_rate
        rows.append(row)
    t0 = time.perf_counter()
    extract(
        man,
        str(model_dir),
        workspace=root / f"ws-{args.dtype[0]}",
        dtype=args.dtype[0],
        storage="float32",
    )
    rows.append({"method": "sslstack rerun (all cached)", "seconds": time.perf_counter() - t0})
    info = {
        "arch": args.arch,
        "files": len(paths),
        "audio_seconds": round(audio, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(json.dumps(info))
    print("| method | seconds | audio-s/s | ratio vs naive | rel. L2 vs naive (max) |")
    print("|---|---|---|---|---|")
    for r in rows:
        nan = float("nan")
        rate, ratio = r.get("audio_s_per_s", nan), r.get("ratio_vs_naive", nan)
        rel = r.get("rel_l2_vs_naive_max", nan)
        print(f"| {r['method']} | {r['seconds']:.2f} | {rate:.1f} | {ratio:.2f} | {rel:.2e} |")
    json.dump({"info": info, "rows": rows}, sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
