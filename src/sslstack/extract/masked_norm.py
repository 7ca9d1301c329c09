"""Exact padded batches for GroupNorm feature encoders (wav2vec2-base, HuBERT-base, WavLM-base).

Their first convolution's output is normalized by a ``GroupNorm`` over time, so zero-padding a
clip to a batch's longest shifts its statistics (11-17 % off its embedding alone). The later
convolutions are unpadded ("valid"), so the frames each clip keeps never read past its end, and
the encoder masks padded frames after that: the norm is the only place padding leaks in.
:class:`MaskedGroupNorm` takes each clip's statistics over its own frames only.
"""

from __future__ import annotations

from typing import Any

import torch


class MaskedGroupNorm(torch.nn.Module):
    """A ``GroupNorm`` whose statistics cover each clip's own frames of a padded batch.

    ``samples`` (each clip's sample count, set before every forward from the model's
    ``attention_mask``) gives the frames: ``(samples - kernel) // stride + 1``. Without it (one
    clip, or clips of one length) it is the plain GroupNorm. Each clip's frames go through the
    wrapped GroupNorm alone (as autocast would run it); frames past a clip's end keep the
    convolution's output, which no kept frame reads.
    """

    def __init__(self, norm: torch.nn.GroupNorm, kernel: int, stride: int) -> None:
        super().__init__()
        self.norm = norm  # keeps the checkpoint's parameters under their own names
        self.kernel, self.stride = kernel, stride
        self.samples: torch.Tensor | None = None
        # the same counts on the host, when the caller has them (HFEncoder does): reading them
        # from the device mask would wait for the device once per batch
        self.host_samples: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.samples is None:
            return self.norm(x)
        t = x.shape[-1]
        samples = self.samples if self.host_samples is None else self.host_samples
        counts = torch.div(samples - self.kernel, self.stride, rounding_mode="floor") + 1
        frames: list[int] = torch.clamp(counts, min=1, max=t).tolist()
        # the plain GroupNorm kernel on each clip's own frames: the very computation of the clip
        # alone, and ~40x cheaper than masked reductions over the padded (B, C, T) tensor
        out = None
        for b, n in enumerate(frames):
            y = self.norm(x[b : b + 1, :, :n])
            if out is None:  # x itself (a conv output, read by nothing else) when dtypes agree;
                # autocast runs group_norm in fp32, as the clip alone would continue
                out = x if y.dtype == x.dtype else x.to(y.dtype)
            out[b : b + 1, :, :n] = y
        assert out is not None
        return out


def mask_group_norm(model: torch.nn.Module) -> bool:
    """Swap the first feature-encoder norm of ``model`` for a :class:`MaskedGroupNorm`.

    Returns False (and changes nothing) for LayerNorm feature encoders, where padding is exact
    already. The clips' lengths are read from the ``attention_mask`` of every forward call.
    """
    convs = getattr(getattr(model, "feature_extractor", None), "conv_layers", None)
    first = convs[0] if convs is not None and len(convs) else None
    norm = getattr(first, "layer_norm", None)
    if first is None or not isinstance(norm, torch.nn.GroupNorm):
        return False
    conv = first.conv
    masked = MaskedGroupNorm(norm, int(conv.kernel_size[0]), int(conv.stride[0]))
    first.layer_norm = masked

    def record_samples(module: torch.nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        mask = kw.get("attention_mask")
        masked.samples = None if mask is None else mask.sum(-1)

    model.register_forward_pre_hook(record_samples, with_kwargs=True)
    return True
