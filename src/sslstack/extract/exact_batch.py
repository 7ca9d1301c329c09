"""Exact padded batches for the families whose transformers forward lets padding leak into the
frames a clip keeps (measured with tiny models, ``tests/extract/test_exact_batch.py``):

* data2vec-audio: a stack of "same"-padded positional convolutions. The encoder zeroes padded
  frames before the first; after it, padded frames hold ``activation(norm(conv(...)))`` and the
  next convolution reads them (40 % off). :func:`mask_conv_inputs` zeroes the padded frames of
  every positional convolution's input, which is what a clip alone reads past its end.
* wav2vec2-conformer: the depthwise convolution of every conformer block reads padded frames
  (30-60 %); masked the same way.
* SEW and SEW-D: the squeezed attention mask is a max-pool of the frame mask, so a clip with an
  odd frame count keeps one squeezed key (half padding) that the clip alone does not have
  (AvgPool floors): every frame attends to it (0.02-0.06 %). :func:`floor_squeezed_keys` masks it.

GroupNorm feature encoders of these families get :func:`masked_norm.mask_group_norm` as the
wav2vec2 ones do. Every fix reads each clip's frame count from the model's ``attention_mask``
(a forward pre-hook) and does nothing without one (a single clip, or clips of one length).
"""

from __future__ import annotations

from typing import Any

import torch


class FrameCounts:
    """Each clip's feature-encoder frame count for the current forward (None: no padding)."""

    def __init__(self, model: Any) -> None:
        self.frames: torch.Tensor | None = None
        self._lengths = model._get_feat_extract_output_lengths
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        mask = kw.get("attention_mask")
        self.frames = None if mask is None else self._lengths(mask.sum(-1)).long()

    def valid(self, t: int, squeeze: int = 1) -> torch.Tensor | None:
        """(B, t) bool: frames (at ``1/squeeze`` of the feature rate) a clip alone would have."""
        if self.frames is None:
            return None
        n = torch.div(self.frames, squeeze, rounding_mode="floor")
        return torch.arange(t, device=n.device)[None, :] < n[:, None]


def _find(model: Any, path: str) -> Any:
    for part in path.split("."):
        model = getattr(model, part, None)
    return model


def mask_conv_inputs(model: Any, counts: FrameCounts, convs: list[torch.nn.Module]) -> int:
    """Zero the padded frames of each (B, C, T) input of ``convs`` (at the feature rate)."""

    def zero_padding(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        valid = counts.valid(args[0].shape[-1])
        if valid is None:
            return None
        return (args[0].masked_fill(~valid[:, None, :], 0.0), *args[1:])

    for conv in convs:
        conv.register_forward_pre_hook(zero_padding)
    return len(convs)


def _restrict_keys(mask: torch.Tensor | None, valid: torch.Tensor, dtype: torch.dtype) -> Any:
    """A transformers 4-D attention mask (bool: attend; float: additive) with the keys outside
    ``valid`` (B, T) masked too; None (no padding) becomes a bool mask."""
    keys = valid[:, None, None, :]
    if mask is None or mask.dtype == torch.bool:
        return keys if mask is None else mask & keys
    return mask.masked_fill(~keys, torch.finfo(mask.dtype).min)


def floor_squeezed_keys(model: Any, counts: FrameCounts, squeeze: int) -> int:
    """SEW / SEW-D: mask the squeezed frames a clip alone does not have (see the module doc)."""
    sewd = _find(model, "encoder.encoder")  # SEW-D: DeBERTa's encoder takes the (B, T) mask

    def sewd_mask(module: torch.nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        valid = counts.valid(args[0].shape[1], squeeze)
        if valid is None:
            return None
        return (args[0], valid.to(args[1].dtype), *args[2:]), kw

    def sew_mask(module: torch.nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        valid = counts.valid(args[0].shape[1], squeeze)
        if valid is None:
            return None
        eager = getattr(model.config, "_attn_implementation", "eager") == "eager"
        mask = kw.get("attention_mask")
        if mask is None and eager:  # additive form for eager attention
            mask = torch.zeros(valid.shape[0], 1, 1, valid.shape[1], dtype=args[0].dtype)
            mask = mask.to(valid.device)
        return args, {**kw, "attention_mask": _restrict_keys(mask, valid, args[0].dtype)}

    if sewd is not None and hasattr(sewd, "get_attention_mask"):
        sewd.register_forward_pre_hook(sewd_mask, with_kwargs=True)
        return 1
    layers = list(_find(model, "encoder.layers") or [])
    for layer in layers:
        layer.register_forward_pre_hook(sew_mask, with_kwargs=True)
    return len(layers)


def exact_batches(model: Any) -> dict[str, int]:
    """Install every fix ``model`` needs for exact padded batches; returns what was installed."""
    from .masked_norm import mask_group_norm

    done = {"group_norm": int(mask_group_norm(model))}
    counts = FrameCounts(model)
    d2v = _find(model, "encoder.pos_conv_embed.layers")
    if d2v is not None:
        done["pos_convs"] = mask_conv_inputs(model, counts, [layer.conv for layer in d2v])
    blocks = [getattr(b, "conv_module", None) for b in (_find(model, "encoder.layers") or [])]
    convs = [b.depthwise_conv for b in blocks if b is not None]
    if convs:
        done["depthwise_convs"] = mask_conv_inputs(model, counts, convs)
    squeeze = int(getattr(model.config, "squeeze_factor", 1))
    if squeeze > 1:
        done["squeezed_keys"] = floor_squeezed_keys(model, counts, squeeze)
    return done
