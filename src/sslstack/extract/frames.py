"""Pooling for encoders that are not transformers: numpy layer outputs, fixed windows, merging.

Such an encoder runs each clip whole (batch of one, so padding never enters a frame) or, for a
fixed-input model, as consecutive windows that all have the model's input length (the last one
zero-padded), exactly as AST and Whisper chunks are run. Every window's statistics merge into the
clip's with :meth:`Stats.merge`, so the clip pools as if its windows were one sequence of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import EncoderError
from .pooling import Stats, masked_stats

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WindowPlan:
    """How a clip is cut for a fixed-input model (all lengths in samples).

    Windows start every ``hop`` samples; a last window with fewer than ``min_last`` real samples is
    dropped unless it is the clip's only one, and every window is zero-padded to ``size``.
    """

    size: int
    hop: int
    min_last: int = 1

    def starts(self, n: int) -> list[int]:
        out = [0]
        while out[-1] + self.size < n:
            nxt = out[-1] + self.hop
            if n - nxt < self.min_last:
                break
            out.append(nxt)
        return out

    def cut(self, wave: np.ndarray) -> list[np.ndarray]:
        """The clip's windows, each exactly ``size`` samples."""
        pieces = []
        for s in self.starts(len(wave)):
            w = wave[s : s + self.size]
            pieces.append(np.pad(w, (0, self.size - len(w))) if len(w) < self.size else w)
        return pieces


def as_frames(x: np.ndarray | torch.Tensor, feature_axis: int = -1) -> torch.Tensor:
    """A layer output of shape (B, ..., D, ...) as (B, frames, D): every axis but the batch and
    the feature axis is a frame axis (a (B, D) vector is one frame)."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    t = t.float()
    if t.ndim < 2:
        raise EncoderError(f"a layer output has shape {tuple(t.shape)}; expected (batch, ..., D)")
    t = torch.movedim(t, feature_axis % t.ndim, -1)
    return t.reshape(t.shape[0], -1, t.shape[-1])


def frame_stats(layers: Sequence[torch.Tensor]) -> Stats:
    """Statistics over every frame of each (B, T, D) layer (no padding inside)."""
    import torch

    widths = {int(h.shape[-1]) for h in layers}
    if len(widths) > 1:
        raise EncoderError(
            f"the layers have different widths ({', '.join(map(str, sorted(widths)))}); a store "
            "holds layers of one width: choose outputs of one width (sidecar 'layers')"
        )
    masks = [torch.ones(h.shape[:2], dtype=torch.bool, device=h.device) for h in layers]
    return masked_stats(list(layers), masks)


def batched(n: int, size: int | None) -> list[range]:
    """Index ranges of at most ``size`` (None: all at once)."""
    step = size if size else n
    return [range(a, min(a + step, n)) for a in range(0, n, max(step, 1))]
