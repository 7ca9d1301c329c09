"""Exported models as encoders: an ONNX export of a tiny transformers encoder pools what the
transformers path pools; TorchScript and TFLite files with their sidecars; window plans; the
sidecar's errors; a model file through ``extract`` and the store key.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sslstack.errors import EncoderError
from sslstack.extract.frames import WindowPlan
from sslstack.extract.resolve import resolve_encoder
from sslstack.extract.runner import resolve_dtype
from tests.audio_fixtures import tone

POOLS = ("mean", "std", "max")
SR = 16000


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    scale = max(float(np.abs(b).max()), 1e-6)
    assert float(np.abs(a - b).max()) <= rtol * scale, (float(np.abs(a - b).max()), scale)


class _Hidden(torch.nn.Module):
    """Every hidden state of a transformers encoder as a tuple (what an export returns)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x, output_hidden_states=True).hidden_states)


def _export_onnx(folder: Path, out: Path) -> tuple[Path, int]:
    import transformers as tf

    model = tf.AutoModel.from_pretrained(folder).eval()
    n_hidden = model.config.num_hidden_layers + 1
    names = [f"hidden_{i}" for i in range(n_hidden)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(model),
            (torch.zeros(1, SR),),
            str(out),
            dynamo=False,
            input_names=["wave"],
            output_names=names,
            dynamic_axes={"wave": {0: "batch", 1: "samples"}, **{n: {1: "frames"} for n in names}},
        )
    return out, n_hidden


def _sidecar(path: Path, **d: object) -> None:
    path.with_name(path.name + ".json").write_text(json.dumps(d))


def test_onnx_export_of_a_tiny_encoder_equals_the_transformers_path(tiny_model, tmp_path) -> None:  # noqa: ANN001
    folder = tiny_model("wav2vec2-group")
    onnx_path, n_hidden = _export_onnx(folder, tmp_path / "tiny.onnx")
    do_normalize = json.loads((folder / "preprocessor_config.json").read_text())["do_normalize"]
    _sidecar(onnx_path, sample_rate=SR, normalize="clip" if do_normalize else "none")
    hf = resolve_encoder(str(folder)).load()
    ox = resolve_encoder(str(onnx_path)).load()
    assert hf.layer_names == [str(i) for i in range(n_hidden)]
    assert ox.layer_names == [f"hidden_{i}" for i in range(n_hidden)]
    waves = [tone(1.3, freq=300, seed=1), tone(2.05, freq=500, seed=2), tone(0.8, seed=3)]
    for a, b in zip(hf.encode(waves, POOLS), ox.encode(waves, POOLS), strict=True):
        for p in POOLS:
            _close(b[p], a[p], 1e-4)


def test_onnx_intermediate_values_become_layers(tiny_model, tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("onnx")
    import onnx

    onnx_path, _ = _export_onnx(tiny_model("wav2vec2-group"), tmp_path / "tiny.onnx")
    graph = onnx.load(str(onnx_path)).graph
    inner = [n.output[0] for n in graph.node if n.op_type == "Add"][-1]  # some value in the graph
    _sidecar(onnx_path, sample_rate=SR, normalize="clip", layers=[inner, "hidden_2"])
    enc = resolve_encoder(str(onnx_path)).load()
    assert enc.layer_names == [inner, "hidden_2"]
    out = enc.encode([tone(1.0)], ("mean",))[0]["mean"]
    assert out.shape == (2, 32) and np.isfinite(out).all()
    _sidecar(onnx_path, sample_rate=SR, layers=["no-such-value"])
    with pytest.raises(EncoderError, match="no value named no-such-value"):
        resolve_encoder(str(onnx_path)).load()


class _Conv(torch.nn.Module):
    """A fixed-input model: (B, 8000) -> frames (B, 8, T) and a pooled (B, 8) vector."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 8, 400, stride=160)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.conv(x[:, None, :]))
        return h, h.mean(-1)


def test_torchscript_windows_pool_as_one_sequence(tmp_path: Path) -> None:
    path = tmp_path / "conv.pt"
    torch.jit.trace(_Conv().eval(), torch.zeros(2, 8000)).save(str(path))
    _sidecar(path, sample_rate=SR, window=0.5, hop=0.25, min_last=0.1, feature_axis=1)
    enc = resolve_encoder(str(path)).load()
    assert enc.layer_names == ["0", "1"]
    wave = tone(1.37, seed=4)
    plan = WindowPlan(8000, 4000, 1600)
    starts = plan.starts(len(wave))
    assert starts == [0, 4000, 8000, 12000, 16000]  # the last, 5920 real samples, is kept
    assert plan.starts(20000) == [0, 4000, 8000, 12000]  # that window reaches the end
    with torch.no_grad():
        outs = [_Conv()(torch.from_numpy(w)[None]) for w in plan.cut(wave)]
    frames = torch.cat([h[0].T for h, _ in outs])  # every window's frames, one sequence
    vecs = torch.cat([v for _, v in outs])
    got = enc.encode([wave], POOLS)[0]
    _close(got["mean"][0], frames.mean(0).numpy(), 1e-5)
    _close(got["std"][0], frames.std(0, unbiased=False).numpy(), 1e-5)
    _close(got["max"][0], frames.amax(0).numpy(), 1e-5)
    _close(got["mean"][1], vecs.mean(0).numpy(), 1e-5)
    together = enc.encode([tone(0.3, seed=5), wave], POOLS)[1]
    for p in POOLS:
        _close(together[p], got[p], 1e-6)


def test_window_plan_edges() -> None:
    plan = WindowPlan(size=100, hop=100, min_last=50)
    assert plan.starts(10) == [0] and plan.starts(100) == [0]
    assert plan.starts(149) == [0] and plan.starts(150) == [0, 100]
    cut = plan.cut(np.ones(160, np.float32))
    assert [len(c) for c in cut] == [100, 100] and cut[1][60:].sum() == 0


def test_tflite_file_with_a_sidecar_equals_birdnet(tmp_path: Path) -> None:
    from sslstack.extract import pretrained

    spec = resolve_encoder("birdnet")
    path = tmp_path / "birdnet.tflite"
    shutil.copy(spec.info["path"], path)
    _sidecar(path, **pretrained.BN_SIDECAR, licence="CC BY-NC-SA 4.0")
    enc = resolve_encoder(str(path)).load()
    wave = tone(3.2, sr=48000, seed=6)
    a = enc.encode([wave], POOLS)[0]
    b = spec.load().encode([wave], POOLS)[0]
    for p in POOLS:
        np.testing.assert_array_equal(a[p], b[p])


def test_sidecar_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not really onnx")
    with pytest.raises(EncoderError, match=r"m\.onnx\.json is missing: an exported model needs"):
        resolve_encoder(str(path))
    for bad, msg in [
        ({}, "'sample_rate' must be a positive integer"),
        ({"sample_rate": 16000, "frames": 3}, "unknown key"),
        ({"sample_rate": 16000, "input": "spectrogram"}, "supported: waveform"),
        ({"sample_rate": 16000, "window": -1}, "window and hop must be positive"),
    ]:
        _sidecar(path, **bad)
        with pytest.raises(EncoderError, match=msg) as e:
            resolve_encoder(str(path))
        assert "\n" not in str(e.value)
    with pytest.raises(EncoderError, match="no such file"):
        resolve_encoder(str(tmp_path / "absent.onnx"))


def test_layers_of_different_widths_are_refused(tmp_path: Path) -> None:
    class Two(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, None, :4], x[:, None, :6]

    path = tmp_path / "two.pt"
    torch.jit.trace(Two(), torch.zeros(1, 100)).save(str(path))
    _sidecar(path, sample_rate=SR)
    enc = resolve_encoder(str(path)).load()
    with pytest.raises(EncoderError, match=r"different widths \(4, 6\)"):
        enc.encode([tone(0.1)], ("mean",))


def test_store_key_follows_the_file_and_its_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "conv.pt"
    torch.jit.trace(_Conv().eval(), torch.zeros(1, 8000)).save(str(path))
    _sidecar(path, sample_rate=SR, window=0.5, feature_axis=1)
    first = resolve_encoder(str(path)).revision
    assert resolve_encoder(str(path)).revision == first
    _sidecar(path, sample_rate=SR, window=0.5, hop=0.25, feature_axis=1)
    second = resolve_encoder(str(path)).revision
    assert second != first
    torch.manual_seed(1)
    m = _Conv()
    with torch.no_grad():
        m.conv.weight.mul_(2)
    torch.jit.trace(m.eval(), torch.zeros(1, 8000)).save(str(path))
    assert resolve_encoder(str(path)).revision not in (first, second)


def test_a_model_file_extracts_and_reruns_from_the_cache(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from sslstack.embeddings import find_store
    from sslstack.extract import extract
    from tests.audio_fixtures import write_dataset

    manifest = write_dataset(tmp_path / "data", n=4)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "conv.pt"
    torch.jit.trace(_Conv().eval(), torch.zeros(1, 8000)).save(str(path))
    _sidecar(path, sample_rate=SR, window=0.5, feature_axis=1)
    monkeypatch.chdir(tmp_path)
    res = extract(manifest, "models/conv.pt", workspace=tmp_path / "ws", pools="mean,std")
    assert res.computed == 4 and res.model == str(path)
    again = extract(manifest, "models/conv.pt", workspace=tmp_path / "ws", pools="mean,std")
    assert again.cached == 4 and not again.model_loaded and again.store == res.store
    store = find_store("models/conv.pt", tmp_path / "ws")
    assert store.path.name == res.store and store.layer_names == ["0", "1"]


def test_fp32_only_runtimes_get_fp32_on_cuda_and_refuse_bf16(tmp_path: Path) -> None:
    assert resolve_dtype("auto", "cuda", ["fp32"]) == "fp32"
    assert resolve_dtype("auto", "cuda", None) == "bf16"
    path = tmp_path / "conv.pt"
    torch.jit.trace(_Conv().eval(), torch.zeros(1, 8000)).save(str(path))
    _sidecar(path, sample_rate=SR, window=0.5, feature_axis=1)
    with pytest.raises(EncoderError, match="--dtype bf16: .* runs in fp32 only"):
        resolve_encoder(str(path)).load(dtype="bf16")


def test_missing_onnxruntime_gives_the_install_hint(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x")
    _sidecar(path, sample_rate=SR)
    spec = resolve_encoder(str(path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        EncoderError, match=r"needs the runtime onnxruntime: pip install 'sslstack\[onnx\]'"
    ):
        spec.load()


def test_built_in_names_and_model_files_are_normalized(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``predict`` passes ``--revision`` only to hub ids: before, a run on ``speech-embedding``
    was taken for a hub id and its re-extraction refused the revision."""
    from sslstack.embeddings import normalize_model
    from sslstack.ensemble.predict import _is_hub_id

    for name in ("logmel", "speech-embedding", "birdnet", "ge2e"):
        assert not _is_hub_id(name) and normalize_model(name) == name
    assert _is_hub_id("microsoft/wavlm-large")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.onnx").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert normalize_model("m/x.onnx") == str(tmp_path / "m" / "x.onnx")
