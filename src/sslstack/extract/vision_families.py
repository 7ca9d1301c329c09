"""The transformers vision encoder families sslstack knows, keyed by ``config.model_type``.

The image counterpart of :mod:`.families`: each entry says which transformers class holds the
vision tower, whether its hidden states are token sequences (``"tokens"``: ``(B, T, D)``) or
feature maps (``"maps"``: ``(B, C, H, W)``), how many leading tokens are not image patches (the
CLS token, DeiT's distillation token), and whether ``last_hidden_state`` is a normalized copy of
the last hidden state (then it is stored too, as layer ``"final"``). Every hidden state the
model returns is a layer: for ViT-like models the embedding output and each transformer layer,
for CNNs the stem and each stage. Adding a family touches this file and one test
parametrization (``tests/images/test_vision_families.py``).

Pooling per layer (on the device, one forward): ``mean``, ``std`` and ``max`` over the patch
tokens (CLS and distillation tokens excluded) or over a feature map's positions (global average
and global max). Families with a CLS token also store it, for every hidden state, as layers
``cls0``, ``cls1``, ... (``clsfinal`` after the final norm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import EncoderError
from ..registry import Registry


def _const(v: Any) -> Callable[[Any], Any]:
    return lambda cfg: v


def _beit_final(cfg: Any) -> bool:
    # with mean pooling (the default) BEiT's final LayerNorm moves into its pooler
    return not bool(getattr(cfg, "use_mean_pooling", True))


@dataclass(frozen=True)
class VisionFamily:
    """One transformers vision family.

    Attributes:
        model_type: ``config.model_type`` this entry handles.
        model_class: the transformers class that loads the vision tower (for a two-tower
            checkpoint such as CLIP, the vision half only).
        layout: ``"tokens"`` or ``"maps"`` (see the module docstring).
        prefix: config -> number of leading non-patch tokens (0 for maps and for SigLIP).
        final: config -> True when ``last_hidden_state`` is ``hidden_states[-1]`` normalized.
    """

    model_type: str
    model_class: str
    layout: str
    prefix: Callable[[Any], int] = _const(0)
    final: Callable[[Any], bool] = _const(False)

    def has_cls(self, cfg: Any) -> bool:
        return self.layout == "tokens" and self.prefix(cfg) > 0


VISION_FAMILIES: Registry[VisionFamily] = Registry(
    "vision encoder family", flag="config.model_type", error=EncoderError
)


def register(family: VisionFamily) -> VisionFamily:
    return VISION_FAMILIES.register(family.model_type, family)


def vision_names() -> list[str]:
    return sorted(VISION_FAMILIES)


def is_vision(model_type: str | None) -> bool:
    return model_type is not None and model_type in VISION_FAMILIES


register(VisionFamily("vit", "ViTModel", "tokens", _const(1), _const(True)))
register(VisionFamily("deit", "DeiTModel", "tokens", _const(2), _const(True)))
register(VisionFamily("beit", "BeitModel", "tokens", _const(1), _beit_final))
register(VisionFamily("dinov2", "Dinov2Model", "tokens", _const(1), _const(True)))
for _t in ("clip", "clip_vision_model"):
    register(VisionFamily(_t, "CLIPVisionModel", "tokens", _const(1), _const(False)))
for _t in ("siglip", "siglip_vision_model"):
    register(VisionFamily(_t, "SiglipVisionModel", "tokens", _const(0), _const(True)))
register(VisionFamily("swin", "SwinModel", "tokens", _const(0), _const(True)))
register(VisionFamily("convnext", "ConvNextModel", "maps"))
register(VisionFamily("resnet", "ResNetModel", "maps"))
