"""Loaded image encoders: views in, every layer pooled in one forward, vectors out.

:class:`ViewEncoder` is the image half of the :class:`~sslstack.extract.base.Encoder` contract.
Its items are *views*: ``(S, S, 3) uint8`` RGB crops at the encoder's size ``S`` (made by
:func:`sslstack.images.make_views`). :meth:`~ViewEncoder.prepare` normalizes them on the host;
:meth:`~ViewEncoder.forward` runs one forward on the device that returns every layer, and pools
each layer there: ``mean`` / ``std`` / ``max`` over patch tokens or feature-map positions,
``cls`` the class token. Layers of different widths (CNN stages) are zero-padded on the right
to the widest (``layer_dims`` in the provenance gives each layer's true width). All views of an
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

from ..errors import EncoderError
from .base import Encoder, EncoderSpec, select_layers
from .pooling import Pooled
from .vision_families import VisionFamily, get_vision_family

IMAGE_POOLS = ("mean", "std", "max", "cls")

# (tokens (B, T, D), CLS token (B, D) or None) for one layer
Layer = tuple[torch.Tensor, torch.Tensor | None]


def check_image_pools(pools: Sequence[str], has_cls: bool, model: str) -> None:
    """Refuse a pooling an image encoder cannot give, in one line."""
    ok = [p for p in IMAGE_POOLS if has_cls or p != "cls"]
    bad = [p for p in pools if p not in ok]
    if bad:
        raise EncoderError(
            f"--pool {','.join(pools)}: {', '.join(bad)} is not available for {model} "
            f"(it gives {', '.join(ok)})"
        )


def pool_layers(layers: Sequence[Layer], pools: Sequence[str], width: int) -> dict[str, Any]:
    """``{pool: (B, L, width) float32}``: each layer pooled over its tokens, zero-padded."""
    out: dict[str, list[torch.Tensor]] = {p: [] for p in pools}
    for tokens, cls in layers:
        t = tokens.float()
        for p in pools:
            if p == "mean":
                v = t.mean(dim=1)
            elif p == "std":
                v = t.var(dim=1, unbiased=False).clamp_min(0).sqrt()
            elif p == "max":
                v = t.amax(dim=1)
            else:
                if cls is None:  # pragma: no cover (check_image_pools refuses it first)
                    raise EncoderError("--pool cls: this encoder has no class token")
                v = cls.float()
            out[p].append(torch.nn.functional.pad(v, (0, width - v.shape[-1])))
    return {p: torch.stack(vs, dim=1) for p, vs in out.items()}


def pooled(arrays: dict[str, torch.Tensor], n: int, device: str) -> Pooled:
    """Pooled vectors, copied to the host without waiting on CUDA (as audio encoders do)."""
    if not device.startswith("cuda"):
        return Pooled(arrays, n=n)
    host = {}
    for p, t in arrays.items():
        host[p] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host[p].copy_(t, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return Pooled(host, event, n)


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

    @abstractmethod
    def layers(self, x: torch.Tensor) -> list[Layer]:
        """Every kept layer of a normalized ``(B, 3, S, S)`` batch, as (tokens, CLS token)."""

    def prepare(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        views = np.stack([np.asarray(v, dtype=np.uint8) for v in waves])
        s = self.image_size
        if views.shape[1:] != (s, s, 3):
            raise EncoderError(
                f"{self.model_name}: views must be {s}x{s} RGB, got {views.shape[1:]}"
            )
        x = torch.from_numpy(views).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std).view(1, 3, 1, 1)
        x = ((x - mean) / std).contiguous()
        return x.pin_memory() if self.device.startswith("cuda") else x

    def forward(self, prepared: torch.Tensor, pools: Sequence[str]) -> Pooled:
        check_image_pools(pools, self.has_cls, self.model_name)
        x = prepared.to(self.device, non_blocking=True)
        bf16 = self.dtype == "bf16"
        with (
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            arrays = pool_layers(self.layers(x), pools, max(self.layer_dims))
        return pooled(arrays, int(x.shape[0]), self.device)

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        if not waves:
            return []
        return self.forward(self.prepare(waves), pools).get()


def as_layer(h: torch.Tensor, layout: str, prefix: int) -> Layer:
    """One hidden state as (patch tokens, CLS token): maps are flattened to positions."""
    if layout == "maps":
        return h.flatten(2).transpose(1, 2), None
    return h[:, prefix:], (h[:, 0] if prefix > 0 else None)


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
        self.family, self.device, self.dtype = family, device, dtype
        self.model_name = spec.model
        self.image_size = int(info["image_size"])
        self.pixel_mean = tuple(info["pixel_mean"])  # type: ignore[assignment]
        self.pixel_std = tuple(info["pixel_std"])  # type: ignore[assignment]
        self.prefix, self.final = int(info["prefix"]), bool(info["final"])
        self.has_cls = bool(info["has_cls"])
        names, dims = list(info["layers"]), list(info["layer_dims"])
        self.keep = select_layers(len(names), layers)
        self.layer_names = [names[i] for i in self.keep]
        self.layer_dims = [dims[i] for i in self.keep]

    def layers(self, x: torch.Tensor) -> list[Layer]:
        out = self.model(pixel_values=x, output_hidden_states=True)
        hs = list(out.hidden_states)
        if self.final:
            hs.append(out.last_hidden_state)
        layout = self.family.layout
        return [as_layer(hs[i], layout, self.prefix) for i in self.keep]


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
    family = get_vision_family(spec.family)
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
