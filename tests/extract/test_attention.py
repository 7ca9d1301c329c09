"""Fused attention is the transformers forward: SDPA against eager for every family that has it,
and sslstack's WavLM SDPA attention against transformers' WavLM attention, in fp32 on padded
batches with their attention masks (every hidden state, valid frames, <= 1e-4 relative)."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from sslstack.extract.attention import _wavlm_flex_forward, _wavlm_forward, use_sdpa, wavlm_sdpa
from sslstack.extract.resolve import resolve_encoder
from tests.tiny_models import SPECTROGRAM, VARIANTS

WAVE = [v for v in VARIANTS if v not in SPECTROGRAM]
NO_SDPA = {"wavlm-group", "wavlm-layer", "sew-d-group", "sew-d-layer"}  # transformers has none


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips of 0.9, 0.7 and 0.5 s zero-padded to 0.9 s, and their sample mask."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([14400, 11200, 8000])
    x = torch.randn(3, 14400, generator=g)
    mask = (torch.arange(14400)[None, :] < lens[:, None]).long()
    return x * mask, mask


def _load(folder, impl: str):
    return tf.AutoModel.from_pretrained(folder, attn_implementation=impl).eval()


@torch.inference_mode()
def _states(model, x, mask) -> list[torch.Tensor]:
    out = model(x, attention_mask=mask, output_hidden_states=True)
    frames = model._get_feat_extract_output_lengths(mask.sum(-1))
    hs = [*out.hidden_states, out.last_hidden_state]
    # valid frames of each clip (SEW's inner states run at half rate)
    return [
        torch.cat(
            [
                h[b, : int(n) * h.shape[1] // out.last_hidden_state.shape[1]]
                for b, n in enumerate(frames)
            ]
        )
        for h in hs
    ]


def _max_rel(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    return max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(got, ref, strict=True))


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in NO_SDPA])
def test_encoders_load_with_sdpa(tiny_model, variant):
    enc = resolve_encoder(str(tiny_model(variant))).load()
    assert enc.attn == "sdpa" and enc.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("variant", [v for v in WAVE if v not in NO_SDPA])
def test_sdpa_equals_eager_on_a_padded_batch(tiny_model, variant):
    folder = tiny_model(variant)
    x, mask = _batch()
    eager, sdpa = _load(folder, "eager"), _load(folder, "eager")
    assert use_sdpa(sdpa) == "sdpa" and eager.config._attn_implementation == "eager"
    assert _max_rel(_states(sdpa, x, mask), _states(eager, x, mask)) <= 1e-4


@pytest.mark.parametrize("variant", ["wavlm-group", "wavlm-layer"])
def test_wavlm_sdpa_attention_equals_transformers_on_a_padded_batch(tiny_model, variant):
    folder = tiny_model(variant)
    x, mask = _batch(1)
    ref, fast = _load(folder, "eager"), _load(folder, "eager")
    assert use_sdpa(fast) == "eager"  # transformers has no SDPA WavLM
    assert wavlm_sdpa(fast) == fast.config.num_hidden_layers
    assert all(
        m.forward.__func__ is _wavlm_forward
        for m in fast.modules()
        if type(m).__name__ == "WavLMAttention"
    )
    want, got = _states(ref, x, mask), _states(fast, x, mask)
    assert _max_rel(got, want) <= 1e-4
    assert _max_rel(got[1:], [torch.zeros_like(w) for w in want[1:]]) > 0.5  # not trivially equal
    # one clip without a mask too (the position bias alone)
    one = x[2:, : int(mask[2].sum())]
    assert (
        _max_rel(
            _states(fast, one, torch.ones_like(one, dtype=torch.long)),
            _states(ref, one, torch.ones_like(one, dtype=torch.long)),
        )
        <= 1e-4
    )


def test_wavlm_sdpa_is_not_the_same_code_path(tiny_model):
    """The replacement really runs SDPA (not transformers' multi_head_attention_forward)."""
    fast = _load(tiny_model("wavlm-layer"), "eager")
    wavlm_sdpa(fast)
    calls = []
    orig = torch.nn.functional.scaled_dot_product_attention

    def spy(*a, **k):
        calls.append(a[0].shape)
        return orig(*a, **k)

    x, mask = _batch()
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        _states(fast, x, mask)
    finally:
        torch.nn.functional.scaled_dot_product_attention = orig
    assert len(calls) == fast.config.num_hidden_layers
    assert calls[0][:2] == (3, fast.config.num_attention_heads)


@pytest.mark.parametrize("variant", ["wavlm-group", "wavlm-layer"])
def test_wavlm_flex_attention_equals_transformers_on_a_padded_batch(tiny_model, variant):
    """The FlexAttention forward (gated bias as a score_mod, opt-in) in eager FlexAttention."""
    folder = tiny_model(variant)
    x, mask = _batch(2)
    ref, fast = _load(folder, "eager"), _load(folder, "eager")
    assert wavlm_sdpa(fast, flex=True) == fast.config.num_hidden_layers
    attn = [m for m in fast.modules() if type(m).__name__ == "WavLMAttention"]
    assert all(m.forward.__func__ is _wavlm_flex_forward for m in attn)
    assert _max_rel(_states(fast, x, mask), _states(ref, x, mask)) <= 1e-4
