"""bf16 without wrong values: grouped convolutions in fp32 on the CPU (oneDNN's bf16 grouped
conv1d is wrong for some shapes on some CPUs), bf16 weights on CUDA, pooled statistics in fp32.

The CPU kernel bug does not show on every machine, so it is reproduced here by a stand-in for
``F.conv1d`` that is wrong exactly where the real one was: bf16 (or under CPU autocast), groups > 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslstack.extract import hf_model as hf_encoder
from sslstack.extract.pooling import masked_stats
from sslstack.extract.precision import bf16_mode, fp32_grouped_convs, is_fp32_conv
from sslstack.extract.resolve import resolve_encoder
from tests.audio_fixtures import voiced
from tests.tiny_models import SPECTROGRAM, VARIANTS

SR = 16000


def _wave(seconds: float, seed: int) -> np.ndarray:
    return voiced(seconds, seed, SR)


def _rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


@pytest.fixture
def broken_bf16_grouped_conv(monkeypatch):
    """``F.conv1d`` that is off by ~100 % for a grouped convolution in bf16 or under autocast."""
    real = F.conv1d

    def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        y = real(x, w, b, stride, padding, dilation, groups)
        low = x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")
        if groups > 1 and low:
            g = torch.Generator().manual_seed(0)
            return y + y.float().std() * torch.randn(y.shape, generator=g).to(y.dtype)
        return y

    monkeypatch.setattr(F, "conv1d", conv1d)


def test_grouped_conv_computes_in_fp32_under_autocast():
    torch.manual_seed(0)
    grouped, plain = torch.nn.Conv1d(32, 32, 16, padding=8, groups=4), torch.nn.Conv1d(32, 32, 3)
    model = torch.nn.ModuleList([grouped, plain])
    assert fp32_grouped_convs(model) == ["0"]
    assert is_fp32_conv(grouped) and not is_fp32_conv(plain)
    x = torch.randn(2, 32, 50).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = grouped(x)
    ref = F.conv1d(x.float(), grouped.weight, grouped.bias, padding=8, groups=4)
    assert y.dtype == torch.bfloat16 and torch.equal(y, ref.to(torch.bfloat16))
    grouped.to(torch.bfloat16)  # bf16 weights: cast up too
    assert torch.equal(
        grouped(x),
        F.conv1d(x.float(), grouped.weight.float(), grouped.bias.float(), padding=8, groups=4).to(
            torch.bfloat16
        ),
    )


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in SPECTROGRAM])
def test_every_grouped_conv_of_a_bf16_cpu_encoder_is_fp32(tiny_model, variant):
    enc = resolve_encoder(str(tiny_model(variant))).load(dtype="bf16")
    grouped = [m for m in enc.model.modules() if isinstance(m, torch.nn.Conv1d) and m.groups > 1]
    assert grouped and all(is_fp32_conv(m) for m in grouped)  # the positional conv at least
    f32 = resolve_encoder(str(tiny_model(variant))).load()
    assert not any(is_fp32_conv(m) for m in f32.model.modules())  # fp32: nothing changed


@pytest.mark.parametrize("variant", ["wav2vec2-layer", "wav2vec2-conformer-layer"])
def test_bf16_cpu_is_right_when_the_grouped_kernel_is_wrong(
    tiny_model, variant, broken_bf16_grouped_conv
):
    folder = str(tiny_model(variant))
    waves = [_wave(s, seed=i) for i, s in enumerate((1.0, 0.8))]
    f32 = [resolve_encoder(folder).load().encode([w], ("mean",))[0]["mean"] for w in waves]
    enc = resolve_encoder(folder).load(dtype="bf16")
    for w, ref in zip(waves, f32, strict=True):
        assert _rel_l2(enc.encode([w], ("mean",))[0]["mean"], ref) < 0.05
    for m in enc.model.modules():  # without the fp32 convolutions: the wrong kernel shows
        if is_fp32_conv(m):
            del m.forward
    assert _rel_l2(enc.encode([waves[0]], ("mean",))[0]["mean"], f32[0]) > 0.1


def test_bf16_mode_is_weights_on_cuda_and_autocast_on_cpu():
    assert bf16_mode("cuda") == bf16_mode("cuda:1") == "weights"
    assert bf16_mode("cpu") == "autocast"


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_weights_are_close_to_fp32_and_pool_in_fp32(tiny_model, variant, monkeypatch):
    """The CUDA path (bf16 weights, bf16 inputs, no autocast), run on the CPU."""
    folder = str(tiny_model(variant))
    secs = (0.7, 0.8, 0.85) if variant not in SPECTROGRAM else (1.5, 2.0)
    waves = [_wave(s, seed=i) for i, s in enumerate(secs)]
    f32 = [resolve_encoder(folder).load().encode([w], ("mean", "std"))[0] for w in waves]
    monkeypatch.setattr(hf_encoder, "bf16_mode", lambda device: "weights")
    enc = resolve_encoder(folder).load(dtype="bf16")
    assert {p.dtype for p in enc.model.parameters()} == {torch.bfloat16}
    with hf_encoder.torch.inference_mode():
        assert not isinstance(enc._autocast(), torch.autocast)
    got = enc.encode(waves, ("mean", "std"))
    for g, r in zip(got, f32, strict=True):
        assert g["mean"].dtype == np.float32
        assert _rel_l2(g["mean"], r["mean"]) < 0.05 and _rel_l2(g["std"], r["std"]) < 0.05


def test_pooled_statistics_of_bf16_states_are_fp32():
    torch.manual_seed(0)
    h = (1000 + torch.randn(2, 300, 4)).to(torch.bfloat16)  # large mean: bf16 sums would drift
    mask = torch.ones(2, 300, dtype=torch.bool)
    s = masked_stats([h], mask)
    assert s.mean.dtype == s.m2.dtype == torch.float32
    ref = h.float()
    assert torch.allclose(s.mean[:, 0], ref.mean(1), rtol=1e-6)
    assert torch.allclose(s.m2[:, 0] / 300, ref.var(1, unbiased=False), rtol=1e-4)
