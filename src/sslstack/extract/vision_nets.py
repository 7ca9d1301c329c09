"""The networks of the offline image encoders (:mod:`.vision_pretrained`), loaded and pooled.

``efficientnet-lite*`` runs the network that ``efficientnet-lite-pytorch`` builds, stage by stage
as its own ``extract_features`` does (so its outputs are the package's). ``mobilenet-v2`` is the
short :class:`MobileNetV2` below, written with torchvision's module names so torchvision's state
dict loads strictly without torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import EncoderError
from .base import EncoderSpec
from .vision_model import ViewEncoder, tokens_of


def load_state(path: str, model: str) -> dict[str, torch.Tensor]:
    """A state dict read without unpickling code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EncoderError(f"--model {model}: cannot read its weights {path} ({e})") from e


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], model: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise EncoderError(f"--model {model}: its weights do not match the network: {first}") from e


class _CNNEncoder(ViewEncoder):
    """Shared set-up of the offline CNN encoders: geometry, normalization, layer choice."""

    def __init__(
        self,
        spec: EncoderSpec,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        layers: Sequence[int] | None = None,
    ) -> None:
        self._set_up(spec, device, dtype, layers)

    def _pick(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [tokens_of(maps[i], "maps", 0) for i in self.keep]


# --- EfficientNet-Lite -------------------------------------------------------------------------


def _stage_sizes(net: Any) -> list[int]:
    """Blocks per stage, as ``EfficientNet.__init__`` repeats them."""
    from efficientnet_lite_pytorch.utils import round_repeats

    gp, args = net._global_params, net._blocks_args
    last = len(args) - 1
    return [
        a.num_repeat if gp.fix_head_stem and i in (0, last) else round_repeats(a.num_repeat, gp)
        for i, a in enumerate(args)
    ]


class EfficientNetLite(_CNNEncoder):
    """EfficientNet-Lite: stem, seven stages, head convolution (``extract_features`` split)."""

    def __init__(self, net: nn.Module, spec: EncoderSpec, **kw: Any) -> None:
        super().__init__(spec, **kw)
        self.net: Any = net.to(self.device).eval()  # the package's EfficientNet (untyped)
        ends, n = [], 0
        for k in _stage_sizes(net):
            n += k
            ends.append(n)
        self.stage_ends = set(ends)

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        maps = [x]
        rate, blocks = net._global_params.drop_connect_rate, net._blocks
        for idx, block in enumerate(blocks):
            x = block(x, drop_connect_rate=rate * float(idx) / len(blocks) if rate else rate)
            if idx + 1 in self.stage_ends:
                maps.append(x)
        maps.append(net._swish(net._bn1(net._conv_head(x))))
        return self._pick(maps)


def build_efficientnet_lite(name: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        from .weights import install_hint, pip_extra

        hint = install_hint(name, pip_extra("images"), "efficientnet-lite-pytorch")
        raise EncoderError(hint) from None
    return EfficientNet.from_name(name)


def load_efficientnet_lite(spec: EncoderSpec, **kw: Any) -> EfficientNetLite:
    net = build_efficientnet_lite(spec.model)
    load_strict(net, load_state(spec.info["paths"][0], spec.model), spec.model)
    return EfficientNetLite(net, spec, **kw)


# --- MobileNetV2 (torchvision's module names) --------------------------------------------------


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [_cbr(cin, hidden, 1)] if expand != 1 else []
        layers += [_cbr(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False)]
        self.conv = nn.Sequential(*layers, nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


MB_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]  # (expand, channels, repeats, stride) per stage


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) as torchvision builds it; ``stage_ends`` index ``features``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_cbr(3, 32, 3, 2)]
        cin, self.stage_ends = 32, [0]
        for t, c, n, s in MB_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
            self.stage_ends.append(len(blocks) - 1)
        blocks.append(_cbr(cin, 1280, 1))
        self.stage_ends.append(len(blocks) - 1)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, f in enumerate(self.features):
            x = f(x)
            if i in self.stage_ends:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(x)[-1].mean(dim=(2, 3)))


class MobileNetV2Encoder(_CNNEncoder):
    def __init__(self, net: MobileNetV2, spec: EncoderSpec, **kw: Any) -> None:
        super().__init__(spec, **kw)
        self.net = net.to(self.device).eval()

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._pick(self.net.stages(x))


def load_mobilenet_v2(spec: EncoderSpec, **kw: Any) -> MobileNetV2Encoder:
    net = MobileNetV2()
    load_strict(net, load_state(spec.info["paths"][0], spec.model), spec.model)
    return MobileNetV2Encoder(net, spec, **kw)


# --- raw pixels --------------------------------------------------------------------------------


class PixelEncoder(_CNNEncoder):
    """The view's pixels (0..1), flattened row-major with channels last, as one token."""

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x.permute(0, 2, 3, 1).reshape(x.shape[0], 1, -1)]
