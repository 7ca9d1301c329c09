"""Exported models as encoders: ONNX (onnxruntime), TFLite (ai-edge-litert), TorchScript.

``--model path/model.onnx`` (or ``.tflite``, ``.pt``) needs a sidecar ``path/model.onnx.json``
for what the file does not say (see :class:`Sidecar`). Each chosen output, ONNX intermediate
value or TFLite tensor is a "layer"; every layer must have the same width (the store holds
(layers, D) per item). A model that takes any length runs each clip whole (batch of one: nothing
padded ever reaches a frame); a fixed-input model runs over windows, pooled as one sequence.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import EncoderError
from ..registry import Registry
from .base import Encoder, EncoderSpec, select_layers
from .frames import WindowPlan, as_frames, batched, frame_stats
from .pooling import Stats, cut_pieces, finalize, merge_pieces, split_stats
from .weights import files_digest, import_runtime, pip_extra, weight_records

INPUTS = ("waveform",)
NORMALIZE = ("none", "clip")
TFLITE_BATCH = 1  # windows per invoke: larger batches are no faster per window on a CPU, and the
# first invoke of each batch shape costs ~2.5 s per window with every tensor preserved


@dataclass(frozen=True)
class Sidecar:
    """``<model file>.json``: what the exported file does not say.

    Attributes:
        sample_rate: audio rate the model takes (required).
        input: ``waveform``: a (batch, samples) float32 tensor.
        window: fixed input length in seconds (None: the model takes any length).
        hop: seconds between windows (default: ``window``).
        min_last: a last partial window is kept when it holds at least this many seconds.
        min_seconds: whole clips shorter than this are zero-padded to it (no window).
        normalize: ``clip`` (zero mean, unit variance per clip, as wav2vec2's feature extractor)
            or ``none``.
        scale: samples are multiplied by it (32768 for models that take int16-range values).
        layers: outputs, ONNX intermediate values or TFLite tensor names to pool, in order
            (default: every output).
        feature_axis: the axis of each layer output that holds features (default -1); an int for
            all layers or ``{name: axis}``.
        licence: the weights' licence, printed on first use and kept in the store provenance.
    """

    sample_rate: int
    input: str = "waveform"
    window: float | None = None
    hop: float | None = None
    min_last: float = 0.0
    min_seconds: float = 0.0
    normalize: str = "none"
    scale: float = 1.0
    layers: tuple[str, ...] | None = None
    feature_axis: Any = -1
    licence: str | None = None

    @classmethod
    def read(cls, path: Path) -> Sidecar:
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise EncoderError(
                f"{path} is missing: an exported model needs a sidecar JSON, e.g. "
                '{"sample_rate": 16000, "input": "waveform", "window": null}'
            ) from None
        except (OSError, ValueError) as e:
            raise EncoderError(f"{path}: unreadable JSON ({e})") from e
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "sidecar") -> Sidecar:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise EncoderError(f"{where}: unknown key(s) {', '.join(unknown)}; use {sorted(known)}")
        if not isinstance(d.get("sample_rate"), int) or d["sample_rate"] <= 0:
            raise EncoderError(f"{where}: 'sample_rate' must be a positive integer (Hz)")
        kw = dict(d)
        if kw.get("layers") is not None:
            kw["layers"] = tuple(kw["layers"])
        side = cls(**kw)
        side.check(where)
        return side

    def check(self, where: str) -> None:
        if self.input not in INPUTS:
            raise EncoderError(f"{where}: input '{self.input}'; supported: {', '.join(INPUTS)}")
        if self.normalize not in NORMALIZE:
            raise EncoderError(f"{where}: normalize '{self.normalize}'; use none or clip")
        if self.window is not None and (
            self.window <= 0 or (self.hop is not None and self.hop <= 0)
        ):
            raise EncoderError(f"{where}: window and hop must be positive seconds")
        if self.layers is not None and not self.layers:
            raise EncoderError(f"{where}: 'layers' is empty")

    def plan(self) -> WindowPlan | None:
        if self.window is None:
            return None
        sr = self.sample_rate
        size = round(self.window * sr)
        return WindowPlan(
            size, round((self.hop or self.window) * sr), max(1, round(self.min_last * sr))
        )

    def axis(self, name: str) -> int:
        fa = self.feature_axis
        return int(fa.get(name, -1)) if isinstance(fa, dict) else int(fa)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["layers"] = list(self.layers) if self.layers else None
        return d


class Session(Protocol):
    """A loaded runtime: ``run`` maps a (B, N) float32 batch to one array per layer."""

    names: list[str]
    max_batch: int | None

    def run(self, x: np.ndarray, keep: Sequence[int]) -> list[Any]: ...


@dataclass(frozen=True)
class Runtime:
    """A runtime for exported model files: the suffixes it claims and how it opens a file
    (``open(path, sidecar, device, model)``; the runtime's package is imported only then)."""

    name: str
    suffixes: tuple[str, ...]
    open: Callable[[Path, Sidecar, str, str], Session]


RUNTIMES: Registry[Runtime] = Registry("model file runtime", flag="--model", error=EncoderError)


def suffixes() -> list[str]:
    """Every model-file suffix ``--model`` takes (``.onnx``, ``.tflite``, …)."""
    return [x for r in RUNTIMES.values() for x in r.suffixes]


def runtime_of(model: str) -> Runtime | None:
    """The runtime that claims ``model``'s suffix (None: not a model file)."""
    suffix = Path(model).suffix.lower()
    return next((r for r in RUNTIMES.values() if suffix in r.suffixes), None)


# --- resolving (no runtime imported) --------------------------------------------------------


def is_model_file(model: str) -> bool:
    return runtime_of(model) is not None and not Path(model).is_dir()


def resolve_file(model: str) -> EncoderSpec:
    """The spec of an exported model file: its runtime, sidecar and a hash of both."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise EncoderError(f"--model {model}: no such file")
    path = path.resolve()
    runtime = runtime_of(str(path))
    if runtime is None:
        raise EncoderError(f"--model {model}: a model file ends in {', '.join(suffixes())}")
    side_path = path.with_name(path.name + ".json")
    side = Sidecar.read(side_path)
    info = {
        "path": str(path),
        "runtime": runtime.name,
        "sidecar": side.to_dict(),
        "weights": weight_records([path]),
        "dtypes": ["fp32"],
    }
    if side.licence:
        info["licence"] = side.licence
    rev = "file-" + files_digest([path, side_path])
    return EncoderSpec(str(path), rev, side.sample_rate, runtime.name, load_file, info)


def load_file(
    spec: EncoderSpec, *, device: str = "cpu", dtype: str = "fp32", layers: Any = None
) -> Encoder:
    """Load an exported model (imports its runtime only now)."""
    side = Sidecar.from_dict(spec.info["sidecar"], spec.model)
    if spec.info.get("licence"):
        from .weights import announce_licence

        announce_licence(spec.model, spec.info["licence"])
    path, runtime = Path(spec.info["path"]), spec.info["runtime"]
    check_dtype(spec.model, dtype, spec.info["dtypes"])
    session = RUNTIMES[runtime].open(path, side, device, spec.model)
    return RuntimeEncoder(session, side, select_layers(len(session.names), layers), device)


def check_dtype(model: str, dtype: str, allowed: Sequence[str]) -> None:
    if dtype not in allowed:
        raise EncoderError(f"--dtype {dtype}: {model} runs in {' or '.join(allowed)} only")


def _open_onnx(path: Path, side: Sidecar, device: str, model: str) -> Session:
    return OnnxSession(path, side.layers, device=device, model=model)


def _open_tflite(path: Path, side: Sidecar, device: str, model: str) -> Session:
    return TFLiteSession(path, side.layers, model=model)


def _open_torchscript(path: Path, side: Sidecar, device: str, model: str) -> Session:
    plan = side.plan()
    probe = plan.size if plan else max(side.sample_rate, round(side.min_seconds * side.sample_rate))
    return TorchScriptSession(path, side.layers, device=device, model=model, probe=probe)


RUNTIMES.register("onnx", Runtime("onnx", (".onnx",), _open_onnx))
RUNTIMES.register("tflite", Runtime("tflite", (".tflite",), _open_tflite))
RUNTIMES.register("torchscript", Runtime("torchscript", (".pt", ".ts"), _open_torchscript))


# --- encoder ----------------------------------------------------------------------------------


class RuntimeEncoder(Encoder):
    """Pools the chosen layers of a runtime session over each clip's frames (or windows)."""

    def __init__(self, session: Session, side: Sidecar, keep: list[int], device: str) -> None:
        self.session, self.side, self.keep = session, side, keep
        self.sample_rate = side.sample_rate
        self.layer_names = [session.names[i] for i in keep]
        self.device, self.dtype = device, "fp32"
        self.plan = side.plan()
        self.min_samples = max(1, round(side.min_seconds * side.sample_rate))

    def _prepare_wave(self, wave: np.ndarray) -> np.ndarray:
        w = np.asarray(wave, dtype=np.float32).reshape(-1)
        if self.side.normalize == "clip":
            w = (w - w.mean()) / np.sqrt(w.var() + 1e-7)
        if self.side.scale != 1.0:
            w = w * np.float32(self.side.scale)
        if self.plan is None and len(w) < self.min_samples:
            w = np.pad(w, (0, self.min_samples - len(w)))
        return w.astype(np.float32, copy=False)

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        if not waves:
            return []
        plan = self.plan

        def cut(w: np.ndarray) -> list[np.ndarray]:
            w = self._prepare_wave(w)
            return [w] if plan is None else plan.cut(w)

        pieces, owners = cut_pieces(waves, cut)
        stats = self.piece_stats(pieces)
        return finalize(merge_pieces(stats, owners, len(waves)), pools)

    def piece_stats(self, pieces: list[np.ndarray]) -> list[Stats]:
        """Statistics of each piece: equal-length windows share forwards, whole clips do not."""
        size = self.session.max_batch if self.plan is not None else 1
        out: list[Stats] = []
        for idx in batched(len(pieces), size):
            x = np.stack([pieces[j] for j in idx])
            arrays = self.session.run(x, self.keep)
            names = [self.session.names[i] for i in self.keep]
            frames = [as_frames(a, self.side.axis(n)) for a, n in zip(arrays, names, strict=True)]
            out += split_stats(frame_stats(frames))
        return out


# --- runtimes -------------------------------------------------------------------------------


class OnnxSession:
    """onnxruntime, with the CUDA execution provider when the device is CUDA and it is present.
    Intermediate values named in the sidecar become extra graph outputs (needs ``onnx``).
    ``threads`` sets the intra-op threads (None: onnxruntime's default, one per core); ``source``
    runs these serialized bytes instead of the file (the file still names the model)."""

    def __init__(
        self,
        path: Path,
        layers: Sequence[str] | None,
        *,
        device: str,
        model: str,
        install: str | None = None,
        threads: int | None = None,
        source: bytes | None = None,
    ) -> None:
        ort = import_runtime("onnxruntime", model=model, install=install or pip_extra("onnx"))
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            # one pool of ``threads``, no spinning: on a shared CPU, threads that spin-wait
            # between the many small kernels of these models take cores from everything else
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(source or str(path), opts, providers=providers)
        outputs = [o.name for o in sess.get_outputs()]
        missing = [n for n in (layers or ()) if n not in outputs]
        if missing:  # intermediate values: a second session on the amended graph
            amended = _with_outputs(path, missing, model, install)
            sess = ort.InferenceSession(amended, opts, providers=providers)
        self.sess = sess
        self.input = self.sess.get_inputs()[0]
        self.names = list(layers) if layers else outputs
        batch = self.input.shape[0] if self.input.shape else None
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None

    def run(self, x: np.ndarray, keep: Sequence[int]) -> list[Any]:
        want = [self.names[i] for i in keep]
        return list(self.sess.run(want, {self.input.name: x}))


def _with_outputs(path: Path, names: Sequence[str], model: str, install: str | None) -> bytes:
    """The model with intermediate values exposed as outputs (serialized, in memory)."""
    onnx = import_runtime("onnx", model=model, install=install or pip_extra("onnx"))
    m = onnx.load(str(path))
    values = {v.name for v in m.graph.value_info} | {o for n in m.graph.node for o in n.output}
    unknown = [n for n in names if n not in values]
    if unknown:
        raise EncoderError(f"{model}: no value named {', '.join(unknown)} in the ONNX graph")
    for n in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return bytes(m.SerializeToString())


class TFLiteSession:
    """ai-edge-litert with every tensor preserved, so any named tensor can be read after a run."""

    def __init__(
        self, path: Path, layers: Sequence[str] | None, *, model: str, install: str | None = None
    ) -> None:
        import warnings

        litert = import_runtime(
            "ai_edge_litert.interpreter", model=model, install=install or pip_extra("tflite")
        )
        with warnings.catch_warnings():  # preserve_all_tensors warns that it is for debugging
            warnings.simplefilter("ignore")
            self.it = litert.Interpreter(
                model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True
            )
        self.input = self.it.get_input_details()[0]
        outputs = {d["name"]: d["index"] for d in self.it.get_output_details()}
        tensors = {d["name"]: d["index"] for d in self.it.get_tensor_details()}
        self.names = list(layers) if layers else list(outputs)
        unknown = [n for n in self.names if n not in tensors]
        if unknown:
            raise EncoderError(f"{model}: no tensor named {', '.join(unknown)} in the TFLite model")
        self.index = [tensors[n] for n in self.names]
        dynamic = int(self.input["shape_signature"][0]) == -1
        # one batch shape for the whole run: re-allocating every tensor (all are kept) for each
        # new batch size costs seconds, so a short batch is filled with zero windows
        self.max_batch: int | None = TFLITE_BATCH if dynamic else 1
        self._shape: tuple[int, ...] | None = None

    def run(self, x: np.ndarray, keep: Sequence[int]) -> list[Any]:
        n, full = x.shape[0], self.max_batch or x.shape[0]
        if n < full:
            x = np.concatenate([x, np.zeros((full - n, *x.shape[1:]), x.dtype)])
        first = self._shape is None
        with native_stderr_quiet() if first else contextlib.nullcontext():
            if self._shape != x.shape:
                self.it.resize_tensor_input(self.input["index"], list(x.shape))
                self.it.allocate_tensors()
                self._shape = x.shape
            self.it.set_tensor(self.input["index"], np.ascontiguousarray(x, np.float32))
            self.it.invoke()
        return [np.array(self.it.get_tensor(self.index[i]))[:n] for i in keep]


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """File descriptor 2 to /dev/null, for C++ code that writes there and not to ``sys.stderr``:
    the TFLite runtime's logger on its first invoke ("INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU.", which no Python logger or setting controls) and Ray's core at start.
    Errors still raise as exceptions."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class TorchScriptSession:
    """``torch.jit.load``: the module's output (a tensor, a tuple/list of them, or a dict) gives
    the layers, named by position (``"0"``, ``"1"``, …) or by key."""

    def __init__(
        self, path: Path, layers: Sequence[str] | None, *, device: str, model: str, probe: int
    ) -> None:
        import torch

        try:
            self.module = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as e:
            raise EncoderError(f"--model {model}: not a TorchScript archive ({e})") from e
        self.device = device
        with torch.inference_mode():
            got = self._outputs(torch.zeros(1, probe, device=device))
        self.names = list(layers) if layers else list(got)
        unknown = [n for n in self.names if n not in got]
        if unknown:
            raise EncoderError(f"{model}: outputs are {', '.join(got)}; no {', '.join(unknown)}")
        self.max_batch: int | None = None

    def _outputs(self, x: Any) -> dict[str, Any]:
        out = self.module(x)
        if isinstance(out, dict):
            return {str(k): v for k, v in out.items()}
        if isinstance(out, (list, tuple)):
            return {str(i): v for i, v in enumerate(out)}
        return {"0": out}

    def run(self, x: np.ndarray, keep: Sequence[int]) -> list[Any]:
        import torch

        with torch.inference_mode():
            out = self._outputs(torch.from_numpy(x).to(self.device))
        return [out[self.names[i]].float().cpu() for i in keep]
