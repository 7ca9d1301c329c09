"""How an encoder runs in bf16: bf16 weights on CUDA, autocast on the CPU, and the convolutions
that bf16 cannot be trusted with on a CPU run in fp32.

oneDNN's bf16 grouped ``conv1d`` is wrong for some shapes on some CPUs: with 8 channels per group
it gave relative error 1.09 on one AVX-512 machine (16 or 64 channels per group: 0.003), while the
same call is right on another. The positional convolution of every wav2vec2-style family and the
conformer's depthwise convolution are grouped. On the CPU, under bf16, every grouped
``Conv1d`` therefore computes in fp32 (its input and weights cast up, the output cast back to the
input's dtype): exact for every shape on every CPU, at the price of one convolution per layer
stack in fp32 (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import types
from typing import Any

import torch

#: bf16 modes: ``"weights"`` casts the model to bfloat16 (the inputs follow); ``"autocast"`` keeps
#: fp32 weights and runs the forward under ``torch.autocast``.
BF16_WEIGHTS, BF16_AUTOCAST = "weights", "autocast"


def bf16_mode(device: str) -> str:
    """How ``--dtype bf16`` runs on ``device``: bf16 weights on CUDA (no per-op casts, half the
    weight traffic), autocast elsewhere (on this project's CPU autocast measured faster than bf16
    weights; see docs/benchmarks.md)."""
    return BF16_WEIGHTS if device.startswith("cuda") else BF16_AUTOCAST


def _fp32_conv_forward(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    bias = None if conv.bias is None else conv.bias.float()
    with torch.autocast(x.device.type, enabled=False):
        y = conv._conv_forward(x.float(), conv.weight.float(), bias)
    return y.to(x.dtype)


def fp32_grouped_convs(model: torch.nn.Module) -> list[str]:
    """Make every grouped ``Conv1d`` of ``model`` compute in fp32, whatever the autocast state or
    the weights' dtype (the module and its parameters stay as they are: weight-norm
    parametrizations keep working). Returns the names of the convolutions changed."""
    changed = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv1d) and m.groups > 1:
            m.forward = types.MethodType(_fp32_conv_forward, m)  # type: ignore[method-assign]
            changed.append(name)
    return changed


def is_fp32_conv(m: Any) -> bool:
    """True when :func:`fp32_grouped_convs` changed ``m``."""
    fwd = getattr(m, "forward", None)
    return getattr(fwd, "__func__", None) is _fp32_conv_forward
