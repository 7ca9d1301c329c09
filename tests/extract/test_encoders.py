"""transformers encoder families: weights load, layer names, pooled values against a forward pass
done by hand, padding invariance, --layers truncation, Whisper/AST chunking, pre-LN "final".

Every family runs as a tiny random-init model saved into a temp folder (tests/tiny_models.py) and
loaded through the user path (``resolve_encoder(folder).load()``); nothing touches the network.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from safetensors.torch import load_file, save_file

from sslstack.errors import EncoderError
from sslstack.extract import families
from sslstack.extract import hf_model as hf
from sslstack.extract.families import FAMILIES, _seq_first_contiguous
from sslstack.extract.resolve import resolve_encoder
from tests.audio_fixtures import voiced
from tests.tiny_models import VARIANTS

POOLS = ("mean", "std", "max")
PRE_LN = {f"{f}-layer" for f in ("wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat")} | {
    "wav2vec2-conformer-group",
    "wav2vec2-conformer-layer",
    "audio-spectrogram-transformer",
    "whisper",
}
SPECTRO = ("audio-spectrogram-transformer", "whisper")
PAD = set(VARIANTS) - set(SPECTRO)  # every waveform family batches exactly with padding
SR = 16000
_ENCODERS: dict[tuple[str, tuple[int, ...] | None], hf.HFEncoder] = {}


def _wave(seconds: float, seed: int) -> np.ndarray:
    return voiced(seconds, seed, SR)


def _encoder(tiny_model, variant: str, layers: tuple[int, ...] | None = None) -> hf.HFEncoder:
    key = (variant, layers)
    if key not in _ENCODERS:
        _ENCODERS[key] = resolve_encoder(str(tiny_model(variant))).load(layers=layers)
    return _ENCODERS[key]


def _pool(frames: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """mean/std/max over time of each (T, D) tensor, stacked over layers."""
    return {
        "mean": torch.stack([f.mean(0) for f in frames]).numpy(),
        "std": torch.stack([f.std(0, unbiased=False) for f in frames]).numpy(),
        "max": torch.stack([f.amax(0) for f in frames]).numpy(),
    }


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[p] - b[p]).max() / max(np.abs(b[p]).max(), 1e-12)) for p in b)


def _ast_valid(cfg, n_samples: int) -> torch.Tensor:
    frames = 1 + (n_samples - 400) // 160
    t_dim = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
    starts = torch.arange(t_dim) * cfg.time_stride
    return (starts + cfg.patch_size // 2 <= frames) | (starts == 0)


@torch.inference_mode()
def _reference_frames(variant: str, folder: Path, wave: np.ndarray) -> list[torch.Tensor]:
    """The model alone, all hidden states (+ last_hidden_state when pre-LN), valid frames only."""
    fe = tf.AutoFeatureExtractor.from_pretrained(folder)
    if variant == "whisper":
        enc = tf.WhisperModel.from_pretrained(folder).get_encoder().eval()
        out = enc(
            fe(wave, sampling_rate=SR, return_tensors="pt").input_features,
            output_hidden_states=True,
        )
        tied = out.hidden_states[-1]  # transformers ties the last hidden state to the normed output
        enc.config.tie_last_hidden_states = False
        out = enc(
            fe(wave, sampling_rate=SR, return_tensors="pt").input_features,
            output_hidden_states=True,
        )
        assert torch.equal(tied, out.last_hidden_state)
        valid = math.ceil(len(wave) / 320)
        return [h[0, :valid] for h in (*out.hidden_states, out.last_hidden_state)]
    model = tf.AutoModel.from_pretrained(folder).eval()
    if variant == "audio-spectrogram-transformer":
        out = model(
            fe(wave, sampling_rate=SR, return_tensors="pt").input_values, output_hidden_states=True
        )
        cfg, ok = model.config, _ast_valid(model.config, len(wave))
        f_dim = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
        states = (*out.hidden_states, out.last_hidden_state)
        return [
            h[0, 2:].reshape(f_dim, len(ok), -1)[:, ok].reshape(-1, h.shape[-1]) for h in states
        ]
    x = fe(wave, sampling_rate=SR, return_tensors="pt").input_values
    out = model(x, output_hidden_states=True)
    states = list(out.hidden_states)
    if variant in PRE_LN:
        states.append(out.last_hidden_state)
    return [h[0] for h in states]


# --- loading, names, values ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_loaded_weights_are_the_saved_ones(tiny_model, variant):
    enc = _encoder(tiny_model, variant)
    saved = load_file(tiny_model(variant) / "model.safetensors")
    prefix = "encoder." if variant == "whisper" else ""
    state = enc.model.state_dict()
    assert len(state) > 10
    for k, v in state.items():
        if prefix + k in saved:
            assert torch.equal(v, saved[prefix + k]), k
        else:  # transformers renamed the key on load (AST: query -> q_proj): match by value
            assert any(s.shape == v.shape and torch.equal(v, s) for s in saved.values()), k


@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_names_shapes_and_reference_values(tiny_model, variant):
    enc = _encoder(tiny_model, variant)
    expected = ["0", "1", "2"] + (["final"] if variant in PRE_LN else [])
    assert enc.layer_names == expected and enc.info["layers"] == expected
    assert enc.sample_rate == SR
    wave = _wave(1.3 if variant not in SPECTRO else 2.7, seed=1)
    (got,) = enc.encode([wave], POOLS)
    assert set(got) == set(POOLS)
    assert all(got[p].shape == (len(expected), 32) and got[p].dtype == np.float32 for p in POOLS)
    ref = _pool(_reference_frames(variant, tiny_model(variant), wave))
    assert _rel(got, ref) <= 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_batch_equals_each_clip_alone(tiny_model, variant, monkeypatch):
    enc = _encoder(tiny_model, variant)
    lens = [0.6, 1.1, 0.6, 0.93, 1.1, 0.45, 1.1] if variant not in SPECTRO else [0.6, 1.7, 2.2]
    waves = [_wave(s, seed=i) for i, s in enumerate(lens)]
    alone = [enc.encode([w], POOLS)[0] for w in waves]
    sizes: list[int] = []
    forward = enc._forward
    monkeypatch.setattr(
        enc, "_forward", lambda x, mask, n: (sizes.append(len(n)), forward(x, mask, n))[1]
    )
    batched = enc.encode(waves, POOLS)
    for b, a in zip(batched, alone, strict=True):
        assert _rel(b, a) <= 1e-4
    assert max(sizes) > 1  # clips did share a forward: of different lengths only where exact
    assert (enc.batching == "pad") == (variant in PAD)
    if enc.batching == "bucket":
        assert sorted(sizes) == [1, 1, 2, 3]


@pytest.mark.parametrize("variant", ["wav2vec2-group", "hubert-group", "wavlm-group"])
def test_group_norm_encoders_pad_exactly_only_with_the_masked_norm(tiny_model, variant):
    """A GroupNorm feature encoder normalizes over time: padding shifts a clip's embedding
    unless the first norm takes each clip's statistics over its own frames."""
    from sslstack.extract.masked_norm import MaskedGroupNorm

    enc = resolve_encoder(str(tiny_model(variant))).load()
    first = enc.model.feature_extractor.conv_layers[0]
    assert isinstance(first.layer_norm, MaskedGroupNorm)
    a, b = _wave(0.9, 0), _wave(1.0, 1)
    alone = enc.encode([a], POOLS)[0]
    assert _rel(enc.encode([a, b], POOLS)[0], alone) <= 1e-5
    # the reference: the model as transformers loads it, one clip, no mask
    x = enc.fe(a, sampling_rate=SR, return_tensors="pt")["input_values"]
    ref = tf.AutoModel.from_pretrained(tiny_model(variant)).eval()
    with torch.inference_mode():
        hs = ref(x, output_hidden_states=True).hidden_states
    ref_mean = torch.stack([h[0].mean(0) for h in hs]).numpy()
    assert np.abs(alone["mean"] - ref_mean).max() <= 1e-5 * np.abs(ref_mean).max()
    # without the masked norm, the padded clip is off by far more than float error
    masked = first.layer_norm
    first.layer_norm = masked.norm
    try:
        assert _rel(enc.encode([a, b], POOLS)[0], alone) > 1e-2
    finally:
        first.layer_norm = masked


@pytest.mark.parametrize("variant", VARIANTS)
def test_layers_truncation_keeps_values(tiny_model, variant):
    full = _encoder(tiny_model, variant)
    cut = _encoder(tiny_model, variant, (0, 1))
    blocks = hf._get_attr(cut.model, cut.family.layers_path)
    assert len(blocks) == 1 and cut.layer_names == ["0", "1"]
    wave = _wave(0.8 if variant not in SPECTRO else 1.5, seed=3)
    got, ref = cut.encode([wave], POOLS)[0], full.encode([wave], POOLS)[0]
    assert _rel(got, {p: ref[p][:2] for p in POOLS}) <= 1e-5
    top = _encoder(tiny_model, variant, (2,))
    assert top.layer_names == ["2"] + (["final"] if variant in PRE_LN else [])
    with pytest.raises(EncoderError, match="out of range"):
        resolve_encoder(str(tiny_model(variant))).load(layers=[3])


@pytest.mark.parametrize("variant", sorted(PRE_LN))
def test_pre_ln_final_is_normalized_last_hidden_state(tiny_model, variant):
    enc = _encoder(tiny_model, variant)
    (got,) = enc.encode([_wave(1.0, seed=4)], POOLS)
    assert "final" in enc.info["layer_semantics"] and enc.info["pre_ln"]
    assert _rel({"mean": got["mean"][2]}, {"mean": got["mean"][3]}) > 1e-3  # before vs after the LN


# --- spectrogram families: only audio frames, long clips chunked and merged -----------------


def test_whisper_pools_only_audio_frames_and_chunks_long_clips(tiny_model):
    folder = tiny_model("whisper")
    enc = _encoder(tiny_model, "whisper")
    short = _wave(3.0, seed=5)
    frames = _reference_frames("whisper", folder, short)
    assert frames[0].shape[0] == 150  # 50 frames per audio-second, not 1500
    (got,) = enc.encode([short], POOLS)
    assert _rel(got, _pool(frames)) <= 1e-5
    long = _wave(40.0, seed=6)
    parts = [
        _reference_frames("whisper", folder, long[a:b])
        for a, b in ((0, 30 * SR), (30 * SR, 40 * SR))
    ]
    assert [p[0].shape[0] for p in parts] == [1500, 500]
    ref = _pool([torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))])
    (got,) = enc.encode([long], POOLS)
    assert _rel(got, ref) <= 1e-4


def test_ast_long_clip_is_chunked_not_truncated(tiny_model):
    folder = tiny_model("audio-spectrogram-transformer")
    enc = _encoder(tiny_model, "audio-spectrogram-transformer")
    fe = tf.AutoFeatureExtractor.from_pretrained(folder)
    wave = _wave(15.0, seed=7)
    spans = families.chunk_spans(enc.family, fe, len(wave))
    assert len(spans) == 2
    whole = fe._extract_fbank_features(wave, max_length=4000)[: 1 + (len(wave) - 400) // 160]
    pieces = [fe._extract_fbank_features(wave[a:b], max_length=1024) for a, b in spans]
    tiled = np.concatenate([pieces[0], pieces[1][: len(whole) - 1024]])
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)  # chunks tile every frame once
    parts = [
        _reference_frames("audio-spectrogram-transformer", folder, wave[a:b]) for a, b in spans
    ]
    ref = _pool([torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))])
    (got,) = enc.encode([wave], POOLS)
    assert _rel(got, ref) <= 1e-4
    truncated = _pool(parts[0])
    assert _rel(got, truncated) > 1e-3


# --- resolving ----------------------------------------------------------------------------------


def test_resolve_local_folder_fingerprint_and_info(tiny_model, tmp_path):
    src = tiny_model("wavlm-layer")
    spec = resolve_encoder(str(src))
    assert spec.model == str(src.resolve()) and spec.family == "wavlm" and spec.sample_rate == SR
    assert (
        spec.revision.startswith("local-")
        and spec.info["batching"] == "pad"
        and spec.info["pre_ln"]
    )
    copy = shutil.copytree(src, tmp_path / "copy")
    assert resolve_encoder(str(copy)).revision == spec.revision  # content, not location
    weights = load_file(copy / "model.safetensors")
    weights = {k: v + 1 if k.endswith("layer_norm.bias") else v for k, v in weights.items()}
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert resolve_encoder(str(copy)).revision != spec.revision
    fe = json.loads((copy / "preprocessor_config.json").read_text())
    (copy / "preprocessor_config.json").write_text(json.dumps({**fe, "sampling_rate": 8000}))
    assert resolve_encoder(str(copy)).sample_rate == 8000
    with pytest.raises(EncoderError, match="local folder"):
        resolve_encoder(str(copy), "main")
    with pytest.raises(EncoderError, match="no such folder"):
        resolve_encoder(str(tmp_path / "missing"))


def test_resolve_rejects_unknown_family_and_pickle_weights(tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model("hubert-group"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    unknown = "^config.model_type bert: unknown encoder family; choose from "
    with pytest.raises(EncoderError, match=unknown + ", ".join(FAMILIES)):
        resolve_encoder(str(folder))
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded by resolve")
    with pytest.raises(EncoderError, match="pickle weights.*--allow-unsafe-weights"):
        resolve_encoder(str(folder))
    spec = resolve_encoder(str(folder), allow_unsafe_weights=True)
    assert spec.info["weights"] == ["pytorch_model.bin"]
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(EncoderError, match="no weights"):
        resolve_encoder(str(folder))


def test_weights_that_do_not_load_are_an_error(tiny_model, tmp_path):
    """The Whisper-encoder trap in general: a checkpoint whose keys match nothing."""
    folder = shutil.copytree(tiny_model("wav2vec2-group"), tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    save_file(
        {f"other.{k}": v for k, v in weights.items()},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(EncoderError, match="would be random"):
        resolve_encoder(str(folder)).load()


def test_hub_id_pins_the_snapshot_commit_and_falls_back_offline(tiny_model, tmp_path, monkeypatch):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = shutil.copytree(tiny_model("hubert-layer"), tmp_path / "snapshots" / commit)
    calls: list[dict] = []

    def fake(**kw):
        calls.append(kw)
        if not kw.get("local_files_only"):
            raise ConnectionError("offline")
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    spec = resolve_encoder("org/tiny-hubert", "v1")
    assert (spec.model, spec.revision, spec.family) == ("org/tiny-hubert", commit, "hubert")
    assert calls[0]["revision"] == "v1" and "*.safetensors" in calls[0]["allow_patterns"]
    assert "*.bin" not in calls[0]["allow_patterns"] and "*.py" not in calls[0]["allow_patterns"]
    assert calls[1]["local_files_only"] is True
    enc = spec.load()
    assert enc.layer_names[-1] == "final"


# --- dtype and out-of-memory back-off -----------------------------------------------------------


def test_cuda_oom_halves_the_batch(tiny_model, monkeypatch):
    enc = resolve_encoder(str(tiny_model("wavlm-layer"))).load()
    waves = [_wave(s, seed=i) for i, s in enumerate([0.5, 0.6, 0.7, 0.8])]
    ref = enc.encode(waves, POOLS)
    forward, sizes = enc._forward, []

    def flaky(x, mask, n):
        sizes.append(len(n))
        if len(n) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return forward(x, mask, n)

    monkeypatch.setattr(enc, "_forward", flaky)
    got = enc.encode(waves, POOLS)
    assert sizes[0] == 4 and sizes.count(1) == 4
    assert enc.oom_splits == 3  # 4 -> 2+2 -> 1+1+1+1: the pipeline halves its budget on these
    assert all(_rel(g, r) <= 1e-5 for g, r in zip(got, ref, strict=True))


def test_bf16_autocast_is_close_to_fp32(tiny_model):
    folder = str(tiny_model("wav2vec2-layer"))
    wave = _wave(1.0, seed=9)
    f32 = resolve_encoder(folder).load().encode([wave], ("mean",))[0]["mean"]
    enc = resolve_encoder(folder).load(dtype="bf16")
    b16 = enc.encode([wave], ("mean",))[0]["mean"]
    assert enc.dtype == "bf16" and b16.dtype == np.float32
    assert np.linalg.norm(b16 - f32) / np.linalg.norm(f32) < 0.05
    with pytest.raises(EncoderError, match="fp32 or bf16"):
        resolve_encoder(folder).load(dtype="fp16")


def test_bf16_padded_group_norm_batch_is_close_to_each_clip_in_fp32(tiny_model):
    """bf16 through the masked GroupNorm (autocast runs the norm in fp32 on each clip)."""
    folder = str(tiny_model("wav2vec2-group"))
    waves = [_wave(s, seed=i) for i, s in enumerate((0.7, 0.8, 0.85))]
    f32 = [resolve_encoder(folder).load().encode([w], ("mean",))[0]["mean"] for w in waves]
    b16 = resolve_encoder(folder).load(dtype="bf16").encode(waves, ("mean",))
    for got, ref in zip(b16, f32, strict=True):
        assert np.linalg.norm(got["mean"] - ref) / np.linalg.norm(ref) < 0.05


def test_wavlm_attention_gets_a_contiguous_input(tiny_model):
    """WavLM's attention runs through SDPA (sslstack.extract.attention), which reads its input
    as (B, T, E) and so never takes transformers' bf16 CPU slow path; the contiguous-input hook
    (docs/encoders.md) stays for transformers' own attention. The reference-value test shows
    neither changes a value."""
    from sslstack.extract.attention import _wavlm_forward

    enc = _encoder(tiny_model, "wavlm-group")
    attn = [m for m in enc.model.modules() if type(m).__name__ == "WavLMAttention"]
    assert attn and all(m.forward.__func__ is _wavlm_forward for m in attn)
    h = torch.randn(2, 5, 32)
    (moved, *_), _ = _seq_first_contiguous(torch.nn.Identity(), (h,), {})
    assert torch.equal(moved, h) and moved.transpose(0, 1).is_contiguous()
