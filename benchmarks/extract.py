"""Extraction throughput: sslstack against the straightforward loop users write, same device.

Self-contained: random-initialized encoders built from configs (no hub), audio from the bundled
FSDD folder (as is, or synthesised into 4-12 s clips of 16 kHz speech, hours of it with
``--hours``). Per architecture it runs, in one process on the same files:

* the naive loop on the same device: per file decode, feature extractor, fp32 forward with all
  hidden states, mean of each layer, ``np.save`` (on ``--naive`` files; its rate is per audio-s);
* ``sslstack.extract`` at its defaults (``--dtype``: each given dtype; ``auto`` is bf16 on CUDA);

and reports audio-hours/s, the share of the device's bf16 peak (FLOPs per audio-second counted by
torch on a 10 s clip, see ``flops.py``), the GPU's busy fraction (NVML, when ``pynvml`` is there),
the ratio to the naive loop, the share of wall time spent outside the encoder's forward, and the
relative L2 distance of the pooled vectors from the naive fp32 loop. Before the table it prints
the device, the bf16 peak used, torch / CUDA / transformers versions and the batch seconds chosen
per family; ``--json`` (default ``$OUT/bench.json`` when ``$OUT`` is set) saves all of it.
``--tiny`` swaps in small configs: ``tests/benchmarks`` runs this code path on the CPU that way.

    python benchmarks/extract.py --arch wav2vec2-base --files 200 --dtype fp32 bf16    # CPU
    python benchmarks/extract.py --device cuda --hours 4.5 --arch wavlm-large          # GPU
    python benchmarks/extract.py --device cuda --hours 1.8 --arch all                   # families
    python benchmarks/extract.py --arch all --hours 0.005 --naive 2 --dtype fp32 --flops \
        --peak-tflops 1                                           # CPU check of the GPU path
"""

from __future__ import annotations

import argparse
import json
import os
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

try:  # as a module (tests, other benchmarks) or as a script
    from benchmarks.flops import SECONDS, counted_gflop_per_audio_s
except ImportError:
    from flops import SECONDS, counted_gflop_per_audio_s  # type: ignore[no-redef]

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
# --tiny (the CPU smoke test of this script): hidden 32, 2 layers, a 3-layer conv stack with the
# real 320-sample stride; the code path is the GPU run's
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_TINY_WAVE = dict(
    _TINY,
    conv_dim=(32, 32, 32),
    conv_stride=(5, 8, 8),
    conv_kernel=(10, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
_WHISPER_SMALL = dict(
    d_model=768,
    encoder_layers=12,
    encoder_attention_heads=12,
    decoder_layers=2,
    decoder_attention_heads=12,
    encoder_ffn_dim=3072,
    decoder_ffn_dim=3072,
)
_WHISPER_TINY = dict(
    d_model=32,
    encoder_layers=2,
    encoder_attention_heads=2,
    decoder_layers=1,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
)
#: arch -> (config class, its keywords, the --tiny keywords on top, feature-extractor factory)
ARCHS: dict[str, tuple[Any, dict[str, Any], dict[str, Any], Callable[[], Any]]] = {
    "wav2vec2-base": (tf.Wav2Vec2Config, {}, _TINY_WAVE, _w2v_fe(False)),  # group-norm convs
    "wavlm-large": (
        tf.WavLMConfig,
        _LARGE,
        dict(_TINY_WAVE, num_buckets=16, max_bucket_distance=64),
        _w2v_fe(True),
    ),
    "hubert-large": (tf.HubertConfig, _LARGE, _TINY_WAVE, _w2v_fe(True)),
    "data2vec-audio-base": (
        tf.Data2VecAudioConfig,
        {},
        dict(_TINY_WAVE, num_conv_pos_embeddings=2, conv_pos_kernel_size=5),
        _w2v_fe(True),
    ),
    "wav2vec2-conformer": (
        tf.Wav2Vec2ConformerConfig,
        dict(num_hidden_layers=12, position_embeddings_type="rotary"),
        dict(_TINY_WAVE, conv_depthwise_kernel_size=7),
        _w2v_fe(True),
    ),
    "sew-d": (
        tf.SEWDConfig,
        {},
        dict(_TINY_WAVE, squeeze_factor=2, position_buckets=16, max_position_embeddings=64),
        _w2v_fe(False),
    ),
    "whisper-small": (
        tf.WhisperConfig,
        _WHISPER_SMALL,
        _WHISPER_TINY,
        lambda: tf.WhisperFeatureExtractor(),
    ),
    "ast-base": (tf.ASTConfig, {}, _TINY, lambda: tf.ASTFeatureExtractor()),
}
ALL = [
    "wav2vec2-base",
    "hubert-large",
    "data2vec-audio-base",
    "whisper-small",
    "ast-base",
    "wavlm-large",
]


def make_config(arch: str, tiny: bool = False) -> Any:
    """The benchmark's config of ``arch`` (``tiny``: the smoke test's small variant)."""
    cls, kw, tiny_kw, _ = ARCHS[arch]
    return cls(**{**kw, **(tiny_kw if tiny else {})})


def build_model(arch: str, root: Path, tiny: bool = False) -> Path:
    torch.manual_seed(0)
    out = root / arch
    tf.AutoModel.from_config(make_config(arch, tiny)).eval().save_pretrained(out)
    ARCHS[arch][3]().save_pretrained(out)
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
    """GFLOPs of one forward over a 10 s clip, counted by torch, per audio-second (see
    ``benchmarks/flops.py`` for why under ``no_grad`` and the math attention backend)."""
    fe = tf.AutoFeatureExtractor.from_pretrained(model_dir)
    model = _encoder_of(tf.AutoModel.from_pretrained(model_dir)).to(device).eval()
    x = 0.1 * np.random.default_rng(0).standard_normal(int(SECONDS * 16000)).astype(np.float32)
    try:
        return counted_gflop_per_audio_s(model, _inputs(fe, x, device), SECONDS)
    except Exception as e:  # report, do not lose the run (the smoke test keeps this path alive)
        print(f"flop counter: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    finally:
        del model


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
    model_dir = build_model(arch, root, args.tiny)
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
            "gflop_per_audio_s": gflop,
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
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
    ap.add_argument("--tiny", action="store_true", help="tiny configs (the CPU smoke test)")
    ap.add_argument(
        "--json", type=Path, default=None, help="write the results here (default: $OUT/bench.json)"
    )
    return ap.parse_args(argv)


def run_info(args: argparse.Namespace, device: str, man: Path) -> dict[str, Any]:
    """What the figures depend on: device, its bf16 peak as used, versions, the audio."""
    paths = pd.read_csv(man)["path"].tolist()
    audio = sum(sf.info(p).frames / sf.info(p).samplerate for p in paths)
    cuda = device.startswith("cuda")
    peak = args.peak_tflops * 1e12 if args.peak_tflops else _peak(device)
    return {
        "files": len(paths),
        "audio_hours": round(audio / 3600, 4),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "peak_source": "--peak-tflops" if args.peak_tflops else ("table" if peak else None),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": tf.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "tiny": args.tiny,
    }


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """The whole benchmark, as the command line ``argv`` asks: ``{"info": …, "rows": […]}``."""
    return bench(parse_args(argv))


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark for parsed arguments (see :func:`run`)."""
    tf.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    args.dtype = args.dtype or (["auto"] if device.startswith("cuda") else ["fp32", "bf16"])
    archs = ALL if args.arch == ["all"] else args.arch
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise SystemExit(f"--arch {' '.join(unknown)}: unknown; use {', '.join(ARCHS)} or all")
    with tempfile.TemporaryDirectory(prefix="sslstack-bench-") as tmp:
        root = Path(tmp)
        if args.hours:
            man = synth_manifest(args.hours, root, args.data)
        else:
            man = fsdd_manifest(args.files, root, args.data)
        if args.naive is None:
            n_files = len(pd.read_csv(man))
            args.naive = n_files if not device.startswith("cuda") else min(n_files, 300)
        info = run_info(args, device, man)
        print(json.dumps(info), flush=True)
        rows = []
        for arch in archs:
            rows += bench_arch(arch, args, root, man, device)
    result = {"info": info, "rows": rows}
    out = args.json or (Path(os.environ["OUT"]) / "bench.json" if os.environ.get("OUT") else None)
    if out is not None:  # the device tool brings $OUT back
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}", flush=True)
    return result


def report(result: dict[str, Any]) -> str:
    """The run's set-up lines, then the table (markdown)."""
    info, rows = result["info"], result["rows"]
    peak = info["bf16_peak_tflops"]
    lines = [
        f"device: {info['gpu'] or info['device']} | bf16 peak used: "
        + (f"{peak:g} TFLOP/s ({info['peak_source']})" if peak else "none (no % of peak)"),
        f"torch {info['torch']} | CUDA {info['cuda'] or '–'} | transformers {info['transformers']}"
        f" | {info['files']} files, {info['audio_hours']} audio-h",
        "batch seconds chosen: "
        + ", ".join(
            f"{r['arch']} {_fmt(r.get('batch_seconds'), '.0f')} ({r['method']})"
            for r in rows
            if r["method"].startswith("sslstack")
        ),
        "",
        "| arch | method | seconds | audio-h/s | audio-s/s | × naive | GFLOP/audio-s | % bf16 peak "
        "| GPU busy | outside forward | batch s | rel. L2 vs naive fp32 (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r.get("audio_s_per_s")
        lines.append(
            f"| {r['arch']} | {r['method']} | {r['seconds']:.2f} | "
            f"{_fmt(rate / 3600 if rate else None, '.4f')} | {_fmt(rate, '.1f')} | "
            f"{_fmt(r.get('ratio_vs_naive'), '.2f')} | {_fmt(r.get('gflop_per_audio_s'), '.2f')} | "
            f"{_fmt(r.get('peak_frac'), '.1%')} | "
            f"{_fmt(r.get('busy'), '.0%')} | {_fmt(r.get('outside_forward'), '.1%')} | "
            f"{_fmt(r.get('batch_seconds'), '.0f')} | {_fmt(r.get('rel_l2_max'), '.2e')} |"
        )
    return "\n".join(lines)


def main() -> None:
    print(report(run()))


if __name__ == "__main__":
    main()
