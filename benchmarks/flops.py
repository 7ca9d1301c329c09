"""FLOPs per audio-second of an encoder's forward: counted by torch, and counted by hand.

The counted figure gives the benchmark's "% of bf16 peak". Two things keep it honest on every
device and family:

* it runs under ``torch.no_grad()``, not ``torch.inference_mode()``: torch's ``FlopCounterMode``
  tracks modules with autograd hooks, and under inference mode the hook on a weight-normed
  convolution's parametrization (the positional convolution of wav2vec2, HuBERT, WavLM,
  data2vec-audio, …) fails, surfacing as ``'ParametrizedConv1d' object has no attribute
  'weight'``;
* attention runs through SDPA's math backend while counting: the fused CPU kernel has no FLOP
  formula in torch's counter, so on a CPU the attention matmuls would silently go uncounted (a
  GPU's flash kernel is counted; the math backend gives the same figure on both).

:func:`analytic_gflop_per_audio_s` counts the multiply-adds of the wav2vec2-style families from
their config alone (convolution stack, feature projection, positional convolution, the
transformer's matmuls); the tests check the counted figure against it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

SECONDS = 10.0  # clip length the figures are counted on
SAMPLE_RATE = 16000
ANALYTIC_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")


def counted_gflop_per_audio_s(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], seconds: float = SECONDS
) -> float:
    """GFLOPs of one forward (all hidden states) on ``inputs``, per second of their audio.

    Args:
        model: the encoder, on any device (``meta`` included, for models without
            data-dependent steps).
        inputs: its keyword inputs for one clip of ``seconds``.
        seconds: the audio length ``inputs`` hold.
    """
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(**inputs, output_hidden_states=True)
    return fc.get_total_flops() / seconds / 1e9


def _conv_stack(cfg: Any, samples: int) -> tuple[float, int]:
    """FLOPs of the waveform convolution stack and the number of frames it leaves."""
    flops, length, c_in = 0.0, samples, 1
    for c_out, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride, strict=True):
        length = (length - k) // s + 1
        flops += 2.0 * length * c_in * c_out * k
        c_in = c_out
    return flops, length


def _pos_conv(cfg: Any, frames: int) -> float:
    """FLOPs of the convolutional positional embedding (grouped, "same" padding)."""
    d, groups = cfg.hidden_size, cfg.num_conv_pos_embedding_groups
    if cfg.model_type == "data2vec-audio":  # a stack of odd-kernel convolutions
        k = cfg.conv_pos_kernel_size
        return cfg.num_conv_pos_embeddings * 2.0 * frames * d * (d // groups) * k
    k = cfg.num_conv_pos_embeddings  # one convolution; an even kernel gives one extra frame
    out = frames + 2 * (k // 2) - k + 1
    return 2.0 * out * d * (d // groups) * k


def _transformer(cfg: Any, frames: int) -> float:
    """Matmul FLOPs of the transformer layers: projections, attention scores/values, FFN."""
    t, d, ff = frames, cfg.hidden_size, cfg.intermediate_size
    per_layer = 8.0 * t * d * d + 4.0 * t * d * ff + 4.0 * t * t * d
    if cfg.model_type == "wavlm":  # the gated relative-position bias: Linear(head_dim, 8) per head
        per_layer += 2.0 * t * d * 8
    return cfg.num_hidden_layers * per_layer


def analytic_gflop_per_audio_s(
    cfg: Any, seconds: float = SECONDS, sample_rate: int = SAMPLE_RATE
) -> float:
    """GFLOPs per audio-second of a wav2vec2-style encoder's forward, from its config.

    Counts the convolutions and matmuls (2 FLOPs per multiply-add), not norms, activations or
    softmax, as torch's counter does.

    Args:
        cfg: a transformers config whose ``model_type`` is one of ``ANALYTIC_TYPES``.
        seconds: clip length.
        sample_rate: the model's input rate.

    Raises:
        ValueError: for another model type.
    """
    if cfg.model_type not in ANALYTIC_TYPES:
        raise ValueError(
            f"analytic count: model_type {cfg.model_type!r}; supported: {', '.join(ANALYTIC_TYPES)}"
        )
    conv, frames = _conv_stack(cfg, round(seconds * sample_rate))
    proj = 2.0 * frames * cfg.conv_dim[-1] * cfg.hidden_size
    total = conv + proj + _pos_conv(cfg, frames) + _transformer(cfg, frames)
    return total / seconds / 1e9
