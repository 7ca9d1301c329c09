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
    clip, or clips of one length) it is the plain GroupNorm. On the CPU each clip's frames go
    through the wrapped GroupNorm alone (as autocast would run it); frames past a clip's end keep
    the convolution's output, which no kept frame reads. On an accelerator the statistics are
    masked reductions over the padded batch (no host synchronization per forward).
    """

    def __init__(self, norm: torch.nn.GroupNorm, kernel: int, stride: int) -> None:
        super().__init__()
        self.norm = norm  # keeps the checkpoint's parameters under their own names
        self.kernel, self.stride = kernel, stride
        self.samples: torch.Tensor | None = None
        # the same counts on the host, when the caller has them (HFEncoder does): the per-clip
        # loop reads them without waiting for the device
        self.host_samples: torch.Tensor | None = None
        #: masked reductions (True), the per-clip loop (False), or by device (None: the loop on
        #: the CPU, reductions elsewhere)
        self.vectorized: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.samples is None:
            return self.norm(x)
        t = x.shape[-1]
        counts = torch.div(self.samples - self.kernel, self.stride, rounding_mode="floor") + 1
        if self.vectorized is True or (self.vectorized is None and x.device.type != "cpu"):
            return self._masked(x, torch.clamp(counts, min=1, max=t))
        if self.host_samples is not None:
            counts = torch.div(self.host_samples - self.kernel, self.stride, rounding_mode="floor")
            counts = counts + 1
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

    def _masked(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The same statistics as masked reductions over the padded (B, C, T) batch, in fp32:
        no host synchronization and one kernel per step, for accelerators (on the CPU the
        per-clip loop measured ~40x faster)."""
        b, c, t = x.shape
        g, norm = self.norm.num_groups, self.norm
        xf = x.float().view(b, g, c // g, t)
        m = (torch.arange(t, device=x.device)[None, :] < frames[:, None]).to(xf.dtype)
        m = m[:, None, None, :]  # (B, 1, 1, T)
        n = (frames.to(xf.dtype) * (c // g))[:, None, None, None]
        mean = (xf * m).sum(dim=(2, 3), keepdim=True) / n
        var = (((xf - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / n
        y = ((xf - mean) * torch.rsqrt(var + norm.eps)).view(b, c, t)
        if norm.affine:
            y = y * norm.weight.float()[:, None] + norm.bias.float()[:, None]
        # the dtype the plain GroupNorm gives: fp32 under autocast, else the input's
        return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)


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
