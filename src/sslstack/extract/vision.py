"""transformers vision encoders resolved without loading weights (torch-free, like
:mod:`.hf_resolve` for audio).

:func:`resolve_transformers` is what ``--model`` does for a hub id or a local folder: it reads
``config.json`` and sends a vision ``model_type`` (:mod:`.vision_families`) here and anything
else to the audio resolver. A vision spec's info holds what the image source and the loaded
encoder need: the view size (the shorter side is resized to size / 0.875 before the centre
crop, for every image encoder), the pixel normalization (from ``preprocessor_config.json`` when
there is one, else ImageNet's), and each layer's name and width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EncoderError
from ..images import resize_for
from .base import EncoderSpec
from .hf_resolve import _fingerprint, _read_json, _snapshot, _weight_files, resolve_hf
from .vision_families import VISION_FAMILIES, VisionFamily, is_vision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_transformers(
    model: str,
    revision: str | None = None,
    *,
    trust_remote_code: bool = False,
    allow_unsafe_weights: bool = False,
) -> EncoderSpec:
    """A hub id or local folder: a vision spec for a vision ``model_type``, else the audio one.

    Raises:
        EncoderError: missing files, unknown family, or only unsafe weights.
    """
    folder, rev, model_id = _locate(model, revision, trust_remote_code, allow_unsafe_weights)
    cfg = _read_json(folder / "config.json", model)
    if not is_vision(cfg.get("model_type")):
        return resolve_hf(
            model,
            revision,
            trust_remote_code=trust_remote_code,
            allow_unsafe_weights=allow_unsafe_weights,
        )
    if trust_remote_code:
        raise EncoderError(f"--trust-remote-code: {model} is a built-in vision family; drop it")
    family = VISION_FAMILIES[cfg["model_type"]]
    weights = _weight_files(folder, model, allow_unsafe_weights)
    pp = folder / "preprocessor_config.json"
    proc = _read_json(pp, model) if pp.is_file() else {}
    info = vision_info(family, cfg, proc)
    info.update(path=str(folder), weights=[w.name for w in weights])
    return EncoderSpec(
        model_id,
        rev or _fingerprint(folder, weights),
        int(info["image_size"]),  # an image encoder's "rate": its view size in pixels
        family.model_type,
        _load,
        info,
        input_kind="image",
        stream_seconds=None,
    )


def _locate(
    model: str, revision: str | None, trust: bool, unsafe: bool
) -> tuple[Path, str | None, str]:
    local = Path(model).expanduser()
    if local.is_dir():
        if revision:
            raise EncoderError(f"--revision {revision}: {model} is a local folder, not a hub id")
        return local.resolve(), None, str(local.resolve())
    if model.startswith((".", "/", "~")) or local.exists():
        raise EncoderError(
            f"--model {model}: no such folder (a local model is a folder with config.json)"
        )
    folder, rev = _snapshot(model, revision, trust, unsafe)
    return folder, rev, model


def _tower(cfg: dict[str, Any]) -> dict[str, Any]:
    """The vision half of a two-tower config (CLIP, SigLIP), else the config itself."""
    return dict(cfg.get("vision_config") or cfg)


def layer_table(family: VisionFamily, cfg: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Each stored layer's name and width, from the config alone."""
    c = _tower(cfg)
    if family.model_type == "swin":
        k, e = len(c["depths"]), int(c["embed_dim"])
        dims = [e] + [e * 2 ** min(i + 1, k - 1) for i in range(k)]
    elif family.model_type == "convnext":
        dims = [int(c["hidden_sizes"][0])] + [int(d) for d in c["hidden_sizes"]]
    elif family.model_type == "resnet":
        dims = [int(c["embedding_size"])] + [int(d) for d in c["hidden_sizes"]]
    else:
        dims = [int(c["hidden_size"])] * (int(c["num_hidden_layers"]) + 1)
    names = [str(i) for i in range(len(dims))]
    if family.final(_Cfg(c)):
        names, dims = names + ["final"], dims + [dims[-1]]
    if family.has_cls(_Cfg(c)):
        names, dims = names + [f"cls{n}" for n in names], dims + dims
    return names, dims


class _Cfg(dict):
    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _side(v: Any) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, dict):
        for k in ("shortest_edge", "height", "width"):
            if isinstance(v.get(k), int):
                return int(v[k])
    return None


def view_size(cfg: dict[str, Any], proc: dict[str, Any]) -> int:
    """The model's input size: its processor's crop size, else its size, else
    ``config.image_size``, else 224. (Every image encoder's views are cut the same way, see
    :func:`sslstack.images.resize_for`; the processor's own resize rule is not copied.)"""
    crop = _side(proc.get("crop_size")) if proc.get("do_center_crop", True) else None
    return crop or _side(proc.get("size")) or _side(_tower(cfg).get("image_size")) or 224


def vision_info(family: VisionFamily, cfg: dict[str, Any], proc: dict[str, Any]) -> dict[str, Any]:
    """A vision spec's info (no weights): geometry, normalization, layers."""
    names, dims = layer_table(family, cfg)
    size = view_size(cfg, proc)
    c = _Cfg(_tower(cfg))
    return {
        "input": "image",
        "model_type": family.model_type,
        "layout": family.layout,
        "image_size": size,
        "resize": resize_for(size),
        "pixel_mean": list(proc.get("image_mean") or IMAGENET_MEAN),
        "pixel_std": list(proc.get("image_std") or IMAGENET_STD),
        "prefix": family.prefix(c) if family.layout == "tokens" else 0,
        "final": bool(family.final(c)),
        "has_cls": family.has_cls(c),
        "layers": names,
        "layer_dims": dims,
        "n_hidden": len(names),
        "layer_semantics": (
            "layer i = hidden_states[i] pooled over patch tokens or positions (0: the embedding "
            "or stem output; i: transformer layer or CNN stage i); 'final' = the normalized "
            "last_hidden_state; 'cls<i>' = the CLS token of layer i; widths are zero-padded "
            "to the widest layer (layer_dims gives each true width)"
        ),
        "dtypes": ["fp32", "bf16"],
        "trust_remote_code": False,
    }


def _load(spec: EncoderSpec, **kwargs: Any) -> Any:
    from .vision_model import load_vision

    return load_vision(spec, **kwargs)
