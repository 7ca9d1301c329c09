"""Extraction throughput: sslstack against the straightforward loop users write, same device.

Self-contained: random-initialized encoders built from configs (no hub), audio from the bundled
FSDD folder (as is, or synthesised into 4-12 s clips of 16 kHz speech, hours of it with
``--hours``). Per architecture it runs, in one process on the same files:

* the naive loop on the same device: per file decode, feature extractor, fp32 forward with all
  hidden states, mean of each layer, ``np.save`` (on ``--naive`` files; its rate is per audio-s);
* ``sslstack.extract`` at its defaults (``--dtype``: each given dtype; ``auto`` is bf16 on CUDA);

and reports audio-hours/s, the share of the device's bf16 peak (FLOPs per audio-second counted by
torch on a 10 s clip), the GPU's busy fraction (NVML, when ``pynvml`` is there), the ratio to the
naive loop, the share of wall time spent outside the encoder's forward, and the relative L2
distance of the pooled vectors from the naive fp32 loop.

    python benchmarks/extract.py --arch wav2vec2-base --files 200 --dtype fp32 bf16    # CPU
    python benchmarks/extract.py --device cuda --hours 4.5 --arch wavlm-large          # GPU
    python benchmarks/extract.py --device cuda --hours 1.8 --arch all                   # families
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
import torch
import transformers as tf

from sslstack import extract
from sslstack.audio import load_audio
from sslstack.embeddings import find_store

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
PEAK_BF16 = {"H100": 790e12, "H200": 790e12, "A100": 312e12, "L4": 121e12, "L40S": 362e12}


def _w2v_fe(mask: bool) -> Callable[[], Any]:
    return lambda: tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=mask
    )


_LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    conv_bias=True,
)
ARCHS: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "wav2vec2-base": (lambda: tf.Wav2Vec2Config(), _w2v_fe(False)),  # group-norm conv stack
    "wavlm-large": (lambda: tf.WavLMConfig(**_LARGE), _w2v_fe(True)),
    "hubert-large": (lambda: tf.HubertConfig(**_LARGE), _w2v_fe(True)),
    "data2vec-audio-base": (lambda: tf.Data2VecAudioConfig(), _w2v_fe(True)),
    "wav2vec2-conformer": (
        lambda: tf.Wav2Vec2ConformerConfig(num_hidden_layers=12, position_embeddings_type="rotary"),
        _w2v_fe(True),
    ),
    "sew-d": (lambda: tf.SEWDConfig(), _w2v_fe(False)),
    "whisper-small": (
        lambda: tf.WhisperConfig(
            d_model=768,
            encoder_layers=12,
            encoder_attention_heads=12,
            decoder_layers=2,
            decoder_attention_heads=12,
            encoder_ffn_dim=3072,
            decoder_ffn_dim=3072,
        ),
        lambda: tf.WhisperFeatureExtractor(),
    ),
    "ast-base": (lambda: tf.ASTConfig(), lambda: tf.ASTFeatureExtractor()),
}
ALL = [
    "wav2vec2-base",
    "hubert-large",
    "data2vec-audio-base",
    "whisper-small",
    "ast-base",
    "wavlm-large",
]


def build_model(arch: str, root: Path) -> Path:
    torch.manual_seed(0)
    mk_cfg, mk_fe = ARCHS[arch]
    out = root / arch
    tf.AutoModel.from_config(mk_cfg()).eval().save_pretrained(out)
    mk_fe().save_pretrained(out)
    return out


def fsdd_manifest(n: int, root: Path, data: Path) -> Path:
    meta = pd.read_csv(data / "metadata.csv").sample(n=n, random_state=0)
    meta["path"] = [str((data / p).resolve()) for p in meta["path"]]
    path = root / "bench.csv"
    meta.to_csv(path, index=False)
    return path


def synth_manifest(hours: float, root: Path, data: Path, lo: float = 4.0, hi: float = 12.0) -> Path:
    """Clips of ``lo``-``hi`` s at 16 kHz, each spoken digits of FSDD joined, ``hours`` in all."""
    rng = np.random.default_rng(0)
    srcs = sorted((data / "wav").glob("*.wav"))[:600]
    pool = [soxr.resample(sf.read(p, dtype="float32")[0], 8000, 16000) for p in srcs]
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows, total_s, i = ["path,label"], 0.0, 0
    while total_s < hours * 3600:
        target = int(rng.uniform(lo, hi) * 16000)
        parts, n = [], 0
        while n < target:
            parts.append(pool[rng.integers(len(pool))])
            n += len(parts[-1])
        x = np.concatenate(parts)[:target] + 0.01 * rng.standard_normal(target).astype("float32")
        p = root / "wav" / f"c{i:06d}.wav"
        sf.write(p, np.clip(x, -1, 1), 16000, subtype="PCM_16")
        rows.append(f"{p},{i % 10}")
        total_s += target / 16000
        i += 1
    (root / "synth.csv").write_text("\n".join(rows) + "\n")
    return root / "synth.csv"


def _encoder_of(model: Any) -> Any:
    return model.get_encoder() if isinstance(model, tf.WhisperModel) else model


def _inputs(fe: Any, x: np.ndarray, device: str) -> dict[str, torch.Tensor]:
    inp = fe(x, sampling_rate=16000, return_tensors="pt")
    key = "input_values" if "input_values" in inp else "input_features"
    out = {key: inp[key].to(device)}
    if "attention_mask" in inp and key == "input_values":
        out["attention_mask"] = inp["attention_mask"].to(device)
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def naive(model_dir: Path, paths: list[str], out: Path, device: str) -> tuple[float, dict]:
    """The loop a user writes, timed from the model load (as sslstack's run is)."""
    _sync(device)
    t0 = time.perf_counter()
    fe = tf.AutoFeatureExtractor.from_pretrained(model_dir)
    model = _encoder_of(tf.AutoModel.from_pretrained(model_dir)).to(device).eval()
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    with torch.inference_mode():
        for i, p in enumerate(paths):
            x = load_audio(p, 16000)
            hs = model(**_inputs(fe, x, device), output_hidden_states=True).hidden_states
            vec = torch.stack([h.mean(dim=1)[0] for h in hs]).float().cpu().numpy()
            np.save(out / f"{i}.npy", vec)
            res[p] = vec
    _sync(device)
    del model
    return time.perf_counter() - t0, res


def gflop_per_audio_second(model_dir: Path, device: str) -> float | None:
    """FLOPs of one forward over a 10 s clip, counted by torch, per audio-second."""
    from torch.utils.flop_counter import FlopCounterMode

    fe = tf.AutoFeatureExtractor.from_pretrained(model_dir)
    model = _encoder_of(tf.AutoModel.from_pretrained(model_dir)).to(device).eval()
    x = 0.1 * np.random.default_rng(0).standard_normal(160000).astype(np.float32)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            model(**_inputs(fe, x, device), output_hidden_states=True)
        return fc.get_total_flops() / 10 / 1e9
    except Exception as e:  # some parametrizations trip the counter: report, do not fail
        print(f"flop counter: {type(e).__name__}: {e}", file=sys.stderr)
        return None


class BusyPoller:
    """The GPU's utilization (NVML) sampled every 100 ms while the block runs."""

    def __init__(self, device: str) -> None:
        self.samples: list[float] = []
        self.on = device.startswith("cuda")
        self._stop = threading.Event()

    def __enter__(self) -> BusyPoller:
        if self.on:
            self._t = threading.Thread(target=self._poll, daemon=True)
            self._t.start()
        return self

    def _poll(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            while not self._stop.is_set():
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu / 100)
                time.sleep(0.1)
        except Exception as e:
            print(f"GPU busy poller: {type(e).__name__}: {e}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def busy(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def rel_l2(ws: Path, model_dir: Path, ref: dict[str, np.ndarray]) -> tuple[float, float]:
    """Max and mean relative L2 distance of the stored mean vectors from the naive ones."""
    store = find_store(str(model_dir), workspace=ws)
    key_of = {name: key for key, name in store.names().items()}  # rows are keyed by content
    ids = [p for p in ref if p in key_of]
    rels = []
    for col, layer in enumerate(store.layer_names):
        if layer == "final":
            continue
        _, ours = store.read(layer, "mean", [key_of[i] for i in ids])
        theirs = np.stack([ref[i][col] for i in ids])
        rels.append(
            np.linalg.norm(ours - theirs, axis=-1)
            / np.maximum(np.linalg.norm(theirs, axis=-1), 1e-12)
        )
    r = np.concatenate(rels)
    return float(r.max()), float(r.mean())


def bench_arch(
    arch: str, args: argparse.Namespace, root: Path, man: Path, device: str
) -> list[dict]:
    model_dir = build_model(arch, root)
    paths = pd.read_csv(man)["path"].tolist()
    audio = sum(sf.info(p).frames / sf.info(p).samplerate for p in paths)
    gflop = (
        gflop_per_audio_second(model_dir, device)
        if device.startswith("cuda") or args.flops
        else None
    )
    peak = args.peak_tflops * 1e12 if args.peak_tflops else _peak(device)
    rows: list[dict] = []
    ref, base = None, None
    if args.naive:
        sub = paths[: args.naive]
        sub_audio = sum(sf.info(p).frames / sf.info(p).samplerate for p in sub)
        t, ref = naive(model_dir, sub, root / f"naive-{arch}", device)
        base = sub_audio / t
        rows.append(
            {
                "arch": arch,
                "method": "naive loop fp32",
                "files": len(sub),
                "seconds": t,
                "audio_s_per_s": base,
            }
        )
    for dtype in args.dtype:
        ws = root / f"ws-{arch}-{dtype}"
        kw: dict[str, Any] = {"dtype": dtype, "device": device, "workers": args.workers}
        if args.batch_seconds is not None:
            kw["batch_seconds"] = args.batch_seconds
        _sync(device)
        with BusyPoller(device) as poll:
            t0 = time.perf_counter()
            r = extract(man, str(model_dir), workspace=ws, storage="float32", **kw)
            _sync(device)
            t = time.perf_counter() - t0
        row: dict[str, Any] = {
            "arch": arch,
            "method": f"sslstack {dtype}",
            "files": len(paths),
            "seconds": t,
            "audio_s_per_s": audio / t,
            "computed": r.computed,
            "busy": poll.busy,
            "outside_forward": 1 - r.forward_seconds / t,
            "batch_seconds": r.batch_seconds,
        }
        if gflop and peak:
            row["peak_frac"] = audio / t * gflop * 1e9 / peak
        if ref is not None and base:
            row["ratio_vs_naive"] = (audio / t) / base
            row["rel_l2_max"], row["rel_l2_mean"] = rel_l2(ws, model_dir, ref)
        rows.append(row)
    t0 = time.perf_counter()
    extract(
        man,
        str(model_dir),
        workspace=root / f"ws-{arch}-{args.dtype[0]}",
        dtype=args.dtype[0],
        device=device,
        storage="float32",
    )
    rows.append({"arch": arch, "method": "rerun (all cached)", "seconds": time.perf_counter() - t0})
    return rows


def _peak(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--arch", nargs="+", default=["wav2vec2-base"], help=f"{', '.join(ARCHS)}, or all"
    )
    ap.add_argument("--files", type=int, default=200, help="FSDD files as they are (no --hours)")
    ap.add_argument("--hours", type=float, default=None, help="synthesise this much 4-12 s audio")
    ap.add_argument("--naive", type=int, default=None, help="files for the naive loop (all)")
    ap.add_argument("--data", type=Path, default=FSDD)
    ap.add_argument("--dtype", nargs="+", default=None, help="default: fp32 bf16 (CPU), auto (GPU)")
    ap.add_argument("--batch-seconds", default=None, help="default: sslstack's (auto)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of the device")
    ap.add_argument("--flops", action="store_true", help="count FLOPs on the CPU too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    args.dtype = args.dtype or (["auto"] if device.startswith("cuda") else ["fp32", "bf16"])
    archs = ALL if args.arch == ["all"] else args.arch
    root = Path(tempfile.mkdtemp(prefix="sslstack-bench-"))
    if args.hours:
        man = synth_manifest(args.hours, root, args.data)
    else:
        man = fsdd_manifest(args.files, root, args.data)
    n_files = len(pd.read_csv(man))
    if args.naive is None:
        args.naive = n_files if not device.startswith("cuda") else min(n_files, 300)
    paths = pd.read_csv(man)["path"].tolist()
    audio = sum(sf.info(p).frames / sf.info(p).samplerate for p in paths)
    info = {
        "files": n_files,
        "audio_hours": round(audio / 3600, 3),
        "device": device,
        "torch": torch.__version__,
        "transformers": tf.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(json.dumps(info), flush=True)
    rows = []
    for arch in archs:
        rows += bench_arch(arch, args, root, man, device)
    print(
        "| arch | method | seconds | audio-h/s | audio-s/s | × naive | % bf16 peak | GPU busy "
        "| outside forward | batch s | rel. L2 vs naive fp32 (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r.get("audio_s_per_s")
        print(
            f"| {r['arch']} | {r['method']} | {r['seconds']:.2f} | "
            f"{_fmt(rate / 3600 if rate else None, '.4f')} | {_fmt(rate, '.1f')} | "
            f"{_fmt(r.get('ratio_vs_naive'), '.2f')} | {_fmt(r.get('peak_frac'), '.1%')} | "
            f"{_fmt(r.get('busy'), '.0%')} | {_fmt(r.get('outside_forward'), '.1%')} | "
            f"{_fmt(r.get('batch_seconds'), '.0f')} | {_fmt(r.get('rel_l2_max'), '.2e')} |"
        )
    json.dump({"info": info, "rows": rows}, sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
