"""Loaded image encoders: views in, every layer pooled in one forward, vectors out.

:class:`ViewEncoder` is the image half of the :class:`~sslstack.extract.base.Encoder` contract.
Its items are *views*: ``(S, S, 3) uint8`` RGB crops at the encoder's size ``S`` (made by
:func:`sslstack.images.make_views`). :meth:`~ViewEncoder.prepare` normalizes them on the host;
:meth:`~ViewEncoder.forward` runs one forward on the device that returns every layer, and pools
each layer there into the statistics the engine pools (``mean`` / ``std`` / ``max`` over patch
tokens or feature-map positions). A family with a CLS token gives it as layers of their own,
``cls<i>`` (a layer of one token, so its ``mean`` and ``max`` are the token itself). Layers of
different widths (CNN stages) are zero-padded on the right to the widest (``layer_dims`` in the
provenance gives each layer's true width). All views of an
encoder have one size, so batches have no padding and an item's vectors never depend on which
other items share its forward.

:class:`HFVisionEncoder` is the transformers families' implementation (:mod:`.vision_families`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EncoderError
from .base import Encoder, EncoderSpec, select_layers
from .pooling import Pooled, Stats
from .vision_families import VISION_FAMILIES, VisionFamily


def layer_stats(layers: Sequence[torch.Tensor], width: int) -> Stats:
    """Statistics of each layer's tokens (``(B, T_l, D_l)``) over its tokens, as ``(B, L,
    width)`` tensors: widths zero-padded on the right, every token counted."""
    counts, means, m2s, maxs = [], [], [], []
    for tokens in layers:
        t = tokens.float()
        mean = t.mean(dim=1)
        pad = (0, width - t.shape[-1])
        counts.append(torch.full_like(mean[:, :1], float(t.shape[1])))
        means.append(F.pad(mean, pad))
        m2s.append(F.pad(((t - mean.unsqueeze(1)) ** 2).sum(dim=1), pad))
        maxs.append(F.pad(t.amax(dim=1), pad))
    return Stats(
        torch.stack(counts, 1), torch.stack(means, 1), torch.stack(m2s, 1), torch.stack(maxs, 1)
    )


class ViewEncoder(Encoder):
    """An image encoder over fixed-size views (see the module docstring).

    Subclasses set ``image_size``, ``pixel_mean`` / ``pixel_std`` (on the 0..1 scale),
    ``layer_names``, ``layer_dims`` and ``has_cls``, and implement :meth:`layers`.
    """

    sample_rate = 0
    image_size: int = 224
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    layer_dims: list[int]
    has_cls: bool = False
    model_name: str = "?"

    def _set_up(
        self, spec: EncoderSpec, device: str, dtype: str, layers: Sequence[int] | None
    ) -> None:
        """What every view encoder reads from its spec: device, geometry, normalization and
        the kept layers (``--layers``) with their names and widths."""
        info = spec.info
        self.device, self.dtype, self.model_name = device, dtype, spec.model
        self.image_size = int(info["image_size"])
        self.pixel_mean = tuple(info["pixel_mean"])  # type: ignore[assignment]
        self.pixel_std = tuple(info["pixel_std"])  # type: ignore[assignment]
        names, dims = list(info["layers"]), list(info["layer_dims"])
        self.keep = select_layers(len(names), layers)
        self.layer_names = [str(names[i]) for i in self.keep]
        self.layer_dims = [int(dims[i]) for i in self.keep]

    @abstractmethod
    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every kept layer of a normalized ``(B, 3, S, S)`` batch, as tokens ``(B, T, D)``."""

    def prepare(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        views = np.concatenate([self._views(v) for v in waves])
        x = torch.from_numpy(views).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std).view(1, 3, 1, 1)
        x = ((x - mean) / std).contiguous()
        return x.pin_memory() if self.device.startswith("cuda") else x

    def forward(self, prepared: torch.Tensor, pools: Sequence[str]) -> Pooled:
        x = prepared.to(self.device, non_blocking=True)
        bf16 = self.dtype == "bf16"
        with (
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            stats = layer_stats(self.layers(x), max(self.layer_dims))
        return Pooled.from_stats(stats, pools, self.device)

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        if not waves:
            return []
        return self.forward(self.prepare(waves), pools).get()

    def _views(self, v: np.ndarray) -> np.ndarray:
        s = self.image_size
        if v.ndim == 1:  # the engine's batch-size trial (a "wave" of k * S samples): k views
            return np.full((max(1, len(v) // s), s, s, 3), 128, np.uint8)
        if v.shape != (s, s, 3):
            raise EncoderError(f"{self.model_name}: views must be {s}x{s} RGB, got {v.shape}")
        return np.asarray(v, dtype=np.uint8)[None]


def tokens_of(h: torch.Tensor, layout: str, prefix: int) -> torch.Tensor:
    """One hidden state's patch tokens ``(B, T, D)``: a feature map's positions, or the tokens
    after the ``prefix`` CLS/distillation tokens."""
    if layout == "maps":
        return h.flatten(2).transpose(1, 2)
    return h[:, prefix:]


class HFVisionEncoder(ViewEncoder):
    """A transformers vision tower whose every hidden state is pooled (layer ``"i"`` is
    ``hidden_states[i]``; ``"final"`` is the normalized ``last_hidden_state`` where it differs)."""

    def __init__(
        self,
        model: torch.nn.Module,
        family: VisionFamily,
        spec: EncoderSpec,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        layers: Sequence[int] | None = None,
    ) -> None:
        info = spec.info
        self.model = model.to(device).eval()
        self.family = family
        self._set_up(spec, device, dtype, layers)
        self.prefix, self.final = int(info["prefix"]), bool(info["final"])
        self.has_cls = bool(info["has_cls"])

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(pixel_values=x, output_hidden_states=True)
        hs = list(out.hidden_states)
        if self.final:
            hs.append(out.last_hidden_state)
        every = [tokens_of(h, self.family.layout, self.prefix) for h in hs]
        if self.has_cls:  # the CLS token of each hidden state: a layer of one token
            every += [h[:, :1] for h in hs]
        return [every[i] for i in self.keep]


def load_vision(
    spec: EncoderSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    layers: Sequence[int] | None = None,
) -> HFVisionEncoder:
    """Load a resolved transformers vision spec (safetensors unless allowed otherwise)."""
    import transformers

    from .hf_model import _check_loaded, _quiet

    if dtype not in ("fp32", "bf16"):
        raise EncoderError(f"--dtype {dtype}: choose fp32 or bf16")
    family = VISION_FAMILIES[spec.family]
    folder = spec.info["path"]
    cls = getattr(transformers, family.model_class)
    kw: dict[str, Any] = dict(
        use_safetensors=any(Path(folder).glob("*.safetensors")),
        dtype=torch.float32,
        output_loading_info=True,
    )
    try:
        with _quiet(transformers):
            model, loading = cls.from_pretrained(folder, **kw)
    except (OSError, ValueError) as e:
        raise EncoderError(f"--model {spec.model}: transformers cannot load it: {e}") from e
    _check_loaded(spec.model, model, loading, "")
    return HFVisionEncoder(model, family, spec, device=device, dtype=dtype, layers=layers)
