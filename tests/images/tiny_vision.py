"""Tiny random-initialized transformers vision encoders, one per family, saved like a user's
local model (``save_pretrained``, safetensors, plus a ``preprocessor_config.json``). Nothing
touches the network. Two-tower checkpoints (CLIP, SigLIP) are saved whole, so loading takes the
vision tower out of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers as tf

_VIT: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    image_size=32,
    patch_size=8,
)
_TEXT: dict[str, Any] = dict(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=16,
)
_CNN: dict[str, Any] = dict(hidden_sizes=[8, 12, 16, 24], depths=[1, 1, 2, 1])
# processor files as the real checkpoints' (geometry scaled down to 32 px views)
_CROP = {
    "do_center_crop": True,
    "crop_size": {"height": 32, "width": 32},
    "size": {"shortest_edge": 36},
}
_RESIZE = {"do_center_crop": False, "size": {"height": 32, "width": 32}}


def _config(family: str) -> tuple[Any, dict[str, Any]]:
    if family == "vit":
        return tf.ViTConfig(**_VIT), {**_RESIZE, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    if family == "deit":
        return tf.DeiTConfig(**_VIT), _CROP
    if family == "beit":
        return tf.BeitConfig(**_VIT, use_mean_pooling=False, layer_scale_init_value=0.5), _CROP
    if family == "dinov2":
        v = {k: x for k, x in _VIT.items() if k != "intermediate_size"}
        return tf.Dinov2Config(**v, mlp_ratio=2, layerscale_value=0.5), _CROP
    if family == "clip":
        return tf.CLIPConfig(text_config=_TEXT, vision_config=_VIT, projection_dim=8), _CROP
    if family == "clip_vision_model":
        return tf.CLIPVisionConfig(**_VIT), _CROP
    if family == "siglip":
        return tf.SiglipConfig(text_config=_TEXT, vision_config=_VIT), _RESIZE
    if family == "siglip_vision_model":
        return tf.SiglipVisionConfig(**_VIT), _RESIZE
    if family == "swin":
        return tf.SwinConfig(
            image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], num_heads=[2, 2], window_size=4
        ), _CROP
    if family == "convnext":
        return tf.ConvNextConfig(**_CNN), {"crop_pct": 0.875, "size": {"shortest_edge": 32}}
    if family == "resnet":
        return tf.ResNetConfig(embedding_size=8, **_CNN), {}
    raise KeyError(family)


FAMILIES = [
    "vit",
    "deit",
    "beit",
    "dinov2",
    "clip",
    "clip_vision_model",
    "siglip",
    "siglip_vision_model",
    "swin",
    "convnext",
    "resnet",
]


def make_tiny_vision(family: str, root: Path) -> Path:
    folder = root / family
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    cfg, proc = _config(family)
    model = tf.AutoModel.from_config(cfg).eval()
    with torch.no_grad():  # random-init norms are identity: make them matter
        for name, p in model.named_parameters():
            if "norm" in name.lower() or "layernorm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(proc))
    return folder
