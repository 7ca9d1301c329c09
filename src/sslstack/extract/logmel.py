"""``logmel``: the classic log-mel filterbank baseline behind the same encoder interface.

No weights: 64 mel bands, 25 ms windows, 10 ms hop, at 16 kHz; one "layer" named ``0``.
Frames are computed without centering, so each frame sees only real samples of its own clip and
padding a batch never changes a clip's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .base import Encoder, EncoderSpec, register_builtin
from .pooling import finalize, masked_stats

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 64
VERSION = "logmel-v1"
STREAM_SECONDS = 60.0  # a multiple of the hop: chunks' frames tile the clip's exactly


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular HTK-style mel filters, shape (n_fft // 2 + 1, n_mels)."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    pts = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sr / 2)), n_mels + 2)
    )
    fb = np.zeros((len(freqs), n_mels), dtype=np.float32)
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[:, m] = np.clip(np.minimum(up, down), 0, None)
    return fb


class LogMelEncoder(Encoder):
    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.sample_rate = SAMPLE_RATE
        self.layer_names = ["0"]
        # a chunk carries the 240 samples that complete its last frame; a tail holds a frame
        self.stream_overlap, self.stream_min = N_FFT - HOP, N_FFT
        self.device = device
        self.dtype = "fp32"
        self._fb = torch.from_numpy(mel_filterbank()).to(device)
        self._window = torch.hann_window(N_FFT, device=device)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel frames of a (B, N) batch: (B, T, n_mels)."""
        import torch

        spec = (
            torch.stft(x, N_FFT, HOP, window=self._window, center=False, return_complex=True).abs()
            ** 2
        )
        return torch.log(spec.transpose(1, 2) @ self._fb + 1e-6)

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        import torch

        with torch.inference_mode():
            return self._encode(torch, waves, pools)

    def _encode(self, torch, waves, pools):  # type: ignore[no-untyped-def]
        lens = [max(len(w), N_FFT) for w in waves]
        batch = torch.zeros(len(waves), max(lens))
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, np.float32))
        feats = self.frames(batch.to(self.device))
        n_frames = torch.tensor([(n - N_FFT) // HOP + 1 for n in lens], device=self.device)
        mask = torch.arange(feats.shape[1], device=self.device)[None, :] < n_frames[:, None]
        return finalize(masked_stats([feats], mask), pools)


def _load(spec: EncoderSpec, *, device: str = "cpu", dtype: str = "fp32", layers=None) -> Encoder:
    return LogMelEncoder(device=device)


@register_builtin("logmel")
def logmel_spec() -> EncoderSpec:
    return EncoderSpec(
        "logmel",
        VERSION,
        SAMPLE_RATE,
        "logmel",
        _load,
        {"n_mels": N_MELS, "n_hidden": 1},
        stream_seconds=STREAM_SECONDS,
        stream_exact=True,
    )
