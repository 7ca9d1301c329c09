"""Tiny audio written with numpy + soundfile, for tests (no network, no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, sr: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def voiced(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """A tone whose pitch follows ``seed`` (200 + 50 * seed Hz) in a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def write_dataset(
    root: Path,
    n: int = 12,
    *,
    sr: int = 16000,
    labels: tuple[str, ...] = ("a", "b"),
    min_s: float = 0.3,
    max_s: float = 1.5,
    seed: int = 0,
    groups: int = 0,
) -> Path:
    """Write ``n`` wav files of varied lengths and a manifest.csv; return the manifest path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    lines = ["path,label" + (",group" if groups else "")]
    for i in range(n):
        lab = labels[i % len(labels)]
        dur = float(rng.uniform(min_s, max_s))
        x = tone(dur, sr, freq=200.0 + 150 * labels.index(lab) + 10 * i, seed=seed + i)
        sf.write(root / "wav" / f"{i:03d}.wav", x, sr)
        lines.append(f"wav/{i:03d}.wav,{lab}" + (f",g{i % groups}" if groups else ""))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"
