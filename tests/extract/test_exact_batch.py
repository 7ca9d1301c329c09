"""Exact padded batches for the families whose transformers forward leaks padding
(data2vec-audio, wav2vec2-conformer, SEW, SEW-D; see sslstack.extract.exact_batch): a padded
batch gives each clip what it gives alone, the fixes are what makes it so (without them the same
batch is off), and a clip alone is still the plain transformers forward (test_encoders.py's
reference-value test covers every variant)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslstack.extract import exact_batch
from sslstack.extract.resolve import resolve_encoder

VARIANTS = [
    "data2vec-audio",
    "wav2vec2-conformer-group",
    "wav2vec2-conformer-layer",
    "sew-group",
    "sew-layer",
    "sew-d-group",
    "sew-d-layer",
]
POOLS = ("mean", "std", "max")
SR = 16000
# frame counts 29, 54, 46, 22, 38, 34: odd and even (SEW squeezes by 2), the odd one padded
LENS = (0.6, 1.1, 0.93, 0.45, 0.77, 0.7)


def _wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[p] - b[p]).max() / np.abs(b[p]).max()) for p in b)


def _worst(enc, waves) -> float:
    alone = [enc.encode([w], POOLS)[0] for w in waves]
    return max(_rel(b, a) for b, a in zip(enc.encode(waves, POOLS), alone, strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_batch_is_exact_and_needs_the_fixes(tiny_model, variant, monkeypatch):
    waves = [_wave(s, seed=i) for i, s in enumerate(LENS)]
    enc = resolve_encoder(str(tiny_model(variant))).load()
    assert enc.batching == "pad"
    assert len(enc._groups([len(w) for w in waves])) < len(waves)  # clips do share forwards
    assert _worst(enc, waves) <= 1e-5
    monkeypatch.setattr(exact_batch, "exact_batches", lambda model: {})
    plain = resolve_encoder(str(tiny_model(variant))).load()
    assert _worst(plain, waves) > 1e-4  # what the fixes remove: padding leaking in


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixes_installed_per_family(tiny_model, variant):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_model(variant)).eval()
    done = exact_batch.exact_batches(model)
    assert done["group_norm"] == int(variant.endswith("-group"))
    layers = model.config.num_hidden_layers
    expected = {
        "data2vec-audio": {"pos_convs": model.config.num_conv_pos_embeddings},
        "wav2vec2-conformer": {"depthwise_convs": layers},
        "sew": {"squeezed_keys": layers},
        "sew-d": {"squeezed_keys": 1},
    }[model.config.model_type]
    assert {k: v for k, v in done.items() if k != "group_norm"} == expected


@pytest.mark.parametrize("variant", ["sew-layer", "sew-d-layer", "wav2vec2-conformer-layer"])
def test_exact_with_eager_attention_too(tiny_model, variant):
    enc = resolve_encoder(str(tiny_model(variant))).load()
    if enc.model.config._attn_implementation != "eager":
        enc.model.set_attn_implementation("eager")
    assert _worst(enc, [_wave(s, seed=i) for i, s in enumerate(LENS)]) <= 1e-5


def test_squeezed_key_mask_formats():
    valid = torch.tensor([[True, True, False], [True, True, True]])
    bool_mask = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    got = exact_batch._restrict_keys(bool_mask, valid, torch.float32)
    assert torch.equal(got[0, 0, 1], torch.tensor([True, True, False])) and got[1].all()
    add = torch.zeros(2, 1, 3, 3)
    got = exact_batch._restrict_keys(add, valid, torch.float32)
    assert got[0, 0, 2, 2] == torch.finfo(torch.float32).min and got[1].eq(0).all()
    assert torch.equal(exact_batch._restrict_keys(None, valid, torch.float32)[:, 0, 0], valid)


@pytest.mark.parametrize("variant", ["wav2vec2-group", "sew-group"])
def test_masked_group_norm_reductions_equal_the_per_clip_loop(tiny_model, variant):
    """The accelerator path of MaskedGroupNorm (masked reductions, no host sync), forced on the
    CPU: the same vectors as the per-clip loop and as each clip alone."""
    from sslstack.extract.masked_norm import MaskedGroupNorm

    enc = resolve_encoder(str(tiny_model(variant))).load()
    norm = enc.model.feature_extractor.conv_layers[0].layer_norm
    assert isinstance(norm, MaskedGroupNorm) and norm.vectorized is None
    waves = [_wave(s, seed=i) for i, s in enumerate(LENS)]
    loop = enc.encode(waves, POOLS)
    norm.vectorized = True
    try:
        assert _worst(enc, waves) <= 1e-5
        for a, b in zip(enc.encode(waves, POOLS), loop, strict=True):
            assert _rel(a, b) <= 1e-5
        x = torch.randn(3, 32, 40)
        norm.samples = torch.tensor([400, 300, 100])  # frames 79, 59, 19 -> clamped to 40, 40, 19
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = norm(x)
        assert y.dtype == torch.float32  # what autocast's group_norm gives
        ref = norm.norm(x[2:, :, :19])
        assert torch.allclose(y[2:, :, :19], ref, atol=1e-5)
    finally:
        norm.vectorized, norm.samples = None, None
