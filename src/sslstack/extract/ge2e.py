"""``ge2e``: the GE2E speaker encoder of ``resemblyzer==0.1.4``, without importing resemblyzer.

The package's ``pretrained.pt`` is read with ``torch.load(weights_only=True)`` into a small module
of our own: three 256-unit LSTM layers over 40-band mel frames (25 ms / 10 ms at 16 kHz), then a
linear layer, ReLU and L2 normalisation. As ``VoiceEncoder.embed_utterance`` does, each clip is
cut into 1.6 s partial utterances (160 frames) at 1.3 per second, the last kept when it covers at
least 75 % of a partial, and the mel spectrogram is computed once over the zero-padded clip. The
clip's volume is first raised to -30 dBFS (resemblyzer's ``normalize_volume``, increase only);
its VAD silence trimming is not applied (it needs webrtcvad, and it would change what the clip
holds). Layers: ``lstm1``..``lstm3`` (every frame of every partial) and ``embedding`` (one
vector per partial; the pooled mean, L2-normalised, is resemblyzer's utterance embedding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EncoderError
from .base import Encoder, EncoderSpec, register_builtin, select_layers
from .frames import batched, frame_stats
from .pooling import finalize, merge_pieces, split_stats
from .runtimes import check_dtype
from .weights import announce_licence, files_digest, package_file, package_version, weight_records

if TYPE_CHECKING:
    import torch

DIST = "resemblyzer"
INSTALL = (
    "pip install --no-deps resemblyzer==0.1.4 (only its weights are used; its webrtcvad "
    "dependency does not build)"
)
VERSION = "ge2e-v1"
LICENCE = "GE2E speaker encoder weights of resemblyzer 0.1.4 (Resemble AI): Apache-2.0"
SR, N_FFT, HOP, N_MELS = 16000, 400, 160, 40
PARTIAL, RATE, MIN_COVERAGE = 160, 1.3, 0.75
HIDDEN, N_LAYERS = 256, 3
LAYERS = ("lstm1", "lstm2", "lstm3", "embedding")
BATCH = 128  # partial utterances per forward


@register_builtin("ge2e")
def ge2e_spec() -> EncoderSpec:
    path = package_file(DIST, "resemblyzer/pretrained.pt", model="ge2e", install=INSTALL)
    info = {
        "package": f"{DIST}=={package_version(DIST)}",
        "weights": weight_records([path]),
        "licence": LICENCE,
        "layers": list(LAYERS),
        "window_s": PARTIAL * HOP / SR,
        "hop_s": round(SR / RATE / HOP) * HOP / SR,
        "dtypes": ["fp32"],
        "path": str(path),
        # default poolings: lstm2 mean 0.876, mean+std+max 0.917 (FSDD, unseen speakers)
        "pools": ("mean", "std", "max"),
    }
    return EncoderSpec("ge2e", f"{VERSION}-{files_digest([path])}", SR, "ge2e", _load, info)


def _load(
    spec: EncoderSpec, *, device: str = "cpu", dtype: str = "fp32", layers: Any = None
) -> Encoder:
    check_dtype(spec.model, dtype, ["fp32"])
    announce_licence(spec.model, LICENCE)
    return GE2EEncoder(Path(spec.info["path"]), select_layers(len(LAYERS), layers), device)


# --- the front end, as resemblyzer computes it with librosa ----------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``)."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    log = f >= min_log_hz
    return np.where(
        log, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels
    )


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``: Slaney-normalised triangles,
    shape (n_mels, n_fft // 2 + 1)."""
    fft = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sr / 2)), n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft[None, :]
    w = np.zeros((n_mels, len(fft)))
    for i in range(n_mels):
        w[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    w *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w.astype(np.float32)


def normalize_volume(wave: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """resemblyzer's ``normalize_volume(wav, -30, increase_only=True)``."""
    w = np.asarray(wave, np.float32)
    rms = np.sqrt(np.mean((w * 32767) ** 2))
    if rms == 0:
        return w
    change = target_dbfs - 20 * np.log10(rms / 32767)
    return w if change < 0 else (w * (10 ** (change / 20))).astype(np.float32)


def partial_slices(n_samples: int) -> list[tuple[int, int]]:
    """Mel-frame ranges of the partial utterances (``VoiceEncoder.compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SR / RATE) / HOP))
    slices = [(i, i + PARTIAL) for i in range(0, max(1, n_frames - PARTIAL + step + 1), step)]
    last = slices[-1]
    coverage = (n_samples - last[0] * HOP) / ((last[1] - last[0]) * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices


# --- the network ---------------------------------------------------------------------------


def _network(state: dict[str, Any]) -> torch.nn.Module:
    import torch

    class GE2E(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstms = torch.nn.ModuleList(
                torch.nn.LSTM(N_MELS if k == 0 else HIDDEN, HIDDEN, batch_first=True)
                for k in range(N_LAYERS)
            )
            self.linear = torch.nn.Linear(HIDDEN, HIDDEN)

        def forward(self, mels: torch.Tensor) -> list[torch.Tensor]:
            out, x = [], mels
            for lstm in self.lstms:
                x, (h, _) = lstm(x)
                out.append(x)
            e = torch.relu(self.linear(h[-1]))
            out.append((e / torch.norm(e, dim=1, keepdim=True))[:, None, :])
            return out

    net = GE2E()
    mapped = {}
    for k in range(N_LAYERS):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            mapped[f"lstms.{k}.{kind}_l0"] = state[f"lstm.{kind}_l{k}"]
    mapped.update({f"linear.{p}": state[f"linear.{p}"] for p in ("weight", "bias")})
    net.load_state_dict(mapped)
    return net.eval()


@contextlib.contextmanager
def _lstm_threads(device: str) -> Iterator[None]:
    """One intra-op thread for the LSTM on a CPU. Its matrices are small (256 units), so a second
    thread gains little, and on a busy machine torch's threads spin-wait on each other at every
    time step: 16 FSDD clips took 8.6 s with the default 2 threads on this shared 2-core box
    and 0.19 s with one."""
    import torch

    if not device.startswith("cpu"):
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class GE2EEncoder(Encoder):
    def __init__(self, path: Path, keep: list[int], device: str) -> None:
        import torch

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            self.net = _network(ckpt["model_state"]).to(device)
        except (RuntimeError, KeyError) as e:
            raise EncoderError(f"--model ge2e: {path} is not the GE2E checkpoint ({e})") from e
        self.sample_rate, self.device, self.dtype = SR, device, "fp32"
        self.keep, self.layer_names = keep, [LAYERS[i] for i in keep]
        self._fb = torch.from_numpy(mel_filters()).to(device)
        self._window = torch.hann_window(N_FFT, periodic=True, device=device)

    def mels(self, wave: np.ndarray) -> torch.Tensor:
        """(partials, 160, 40) mel power frames of one clip, as ``embed_utterance`` builds them."""
        import torch

        w = normalize_volume(wave)
        slices = partial_slices(len(w))
        if slices[-1][1] * HOP >= len(w):
            w = np.pad(w, (0, slices[-1][1] * HOP - len(w)))
        x = torch.from_numpy(np.ascontiguousarray(w, np.float32)).to(self.device)
        spec = torch.stft(
            x,
            N_FFT,
            HOP,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mel = (self._fb @ spec.abs() ** 2).T  # (frames, 40)
        return torch.stack([mel[a:b] for a, b in slices])

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        import torch

        if not waves:
            return []
        with torch.inference_mode(), _lstm_threads(self.device):
            mels = [self.mels(np.asarray(w, np.float32).reshape(-1)) for w in waves]
            owners = [i for i, m in enumerate(mels) for _ in range(m.shape[0])]
            flat = torch.cat(mels)
            stats = []
            for idx in batched(flat.shape[0], BATCH):  # partials all have 160 frames
                layers = self.net(flat[idx.start : idx.stop])
                stats += split_stats(frame_stats([layers[k] for k in self.keep]))
        return finalize(merge_pieces(stats, owners, len(waves)), pools)
