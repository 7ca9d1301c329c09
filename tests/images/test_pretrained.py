"""The offline image encoders against their packages' own inference, with the real shipped
weights: EfficientNet-Lite0/1/2 (efficientnet-lite-pytorch's ``EfficientNet.forward``) and
MobileNetV2 (torchvision's weights; the reference is a functional forward written here from
the state dict alone, as torchvision's ``mobilenet_v2`` computes it). Each classifies
scikit-image's ``chelsea`` (a tabby cat) as a cat; each prints its licence and keeps it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslstack.errors import EncoderError
from sslstack.extract import weights
from sslstack.extract.resolve import resolve_encoder
from sslstack.images import make_views

pytest.importorskip("efficientnet_lite_pytorch")
skimage_data = pytest.importorskip("skimage.data")

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
_LOADED: dict[str, object] = {}


def _encoder(name: str):  # noqa: ANN202
    if name not in _LOADED:
        _LOADED[name] = resolve_encoder(name).load()
    return _LOADED[name]


def _views(name: str, tta: str = "none") -> np.ndarray:
    info = resolve_encoder(name).info
    return make_views(skimage_data.chelsea(), info["image_size"], info["resize"], tta)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_efficientnet_lite_equals_package_inference(name: str) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    spec = resolve_encoder(name)
    ref = EfficientNet.from_name(name)
    state = torch.load(spec.info["paths"][0], map_location="cpu", weights_only=True)
    ref.load_state_dict(state, strict=True)
    ref.eval()
    views = _views(name, "flip")
    x = torch.from_numpy((views.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = ref(x)
        head = ref.extract_features(x).mean(dim=(2, 3))
    enc = _encoder(name)
    out = enc.encode(list(views), ["mean", "max"])
    got = np.stack([o["mean"][8] for o in out])
    np.testing.assert_allclose(got, head.numpy(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        ours = enc.net._fc(torch.from_numpy(got))
    np.testing.assert_allclose(ours.numpy(), logits.numpy(), rtol=1e-4, atol=1e-3)
    assert int(logits[0].argmax()) in CATS and int(logits[1].argmax()) in CATS
    assert out[0]["mean"].shape == (9, 1280)
    dims = spec.info["layer_dims"]
    assert all((o["mean"][i, d:] == 0).all() for o in out for i, d in enumerate(dims))


def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    w, b, m, v = (sd[f"{p}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    return F.batch_norm(x, m, v, w, b, False, 0.0, 1e-5)


def _cbr(x: torch.Tensor, sd: dict, p: str, stride: int = 1, groups: int = 1) -> torch.Tensor:
    w = sd[f"{p}.0.weight"]
    x = F.conv2d(x, w, None, stride, (w.shape[-1] - 1) // 2, 1, groups)
    return F.relu6(_bn(x, sd, f"{p}.1"))


def _mobilenet_reference(x: torch.Tensor, sd: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's MobileNetV2 forward from the state dict alone: (logits, pooled features)."""
    x = _cbr(x, sd, "features.0", 2)
    strides = {2: 2, 4: 2, 7: 2, 14: 2}  # the first block of each stride-2 stage
    for i in range(1, 18):
        p, inp = f"features.{i}.conv", x
        expand = f"{p}.0.0.weight" in sd and sd[f"{p}.0.0.weight"].shape[-1] == 1
        j = 0
        if expand:
            x, j = _cbr(x, sd, f"{p}.0"), 1
        dw = sd[f"{p}.{j}.0.weight"]
        x = _cbr(x, sd, f"{p}.{j}", strides.get(i, 1), dw.shape[0])
        x = _bn(F.conv2d(x, sd[f"{p}.{j + 1}.weight"]), sd, f"{p}.{j + 2}")
        if x.shape == inp.shape:
            x = x + inp
    feats = _cbr(x, sd, "features.18").mean(dim=(2, 3))
    return F.linear(feats, sd["classifier.1.weight"], sd["classifier.1.bias"]), feats


def test_mobilenet_v2_equals_the_torchvision_forward() -> None:
    spec = resolve_encoder("mobilenet-v2")
    sd = torch.load(spec.info["paths"][0], map_location="cpu", weights_only=True)
    views = _views("mobilenet-v2", "five-crop")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((views / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits, feats = _mobilenet_reference(x, sd)
    enc = _encoder("mobilenet-v2")
    out = enc.encode(list(views), ["mean"])
    got = np.stack([o["mean"][8] for o in out])
    np.testing.assert_allclose(got, feats.numpy(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(enc.net(x).numpy(), logits.numpy(), rtol=1e-4, atol=1e-3)
    assert all(int(t.argmax()) in CATS for t in logits)


def test_licences_are_printed_and_kept(capsys: pytest.CaptureFixture[str]) -> None:
    for name, words in [
        ("efficientnet-lite0", "Apache-2.0"),
        ("mobilenet-v2", "BSD-3-Clause"),
    ]:
        weights._ANNOUNCED.discard(name)
        spec = resolve_encoder(name)
        assert words in spec.info["licence"]
        paths = [Path(p) for p in spec.info["paths"]]
        assert spec.revision.endswith(weights.files_digest(paths))
        spec.load()
        assert f"note: {name} weights: " in capsys.readouterr().err


def test_weights_that_do_not_match_are_refused(tmp_path: Path) -> None:
    from sslstack.extract.vision_nets import MobileNetV2, load_state, load_strict

    spec = resolve_encoder("mobilenet-v2")
    sd = load_state(spec.info["paths"][0], "mobilenet-v2")
    sd.pop("classifier.1.bias")
    with pytest.raises(EncoderError, match="mobilenet-v2: its weights do not match the network"):
        load_strict(MobileNetV2(), sd, "mobilenet-v2")
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(EncoderError, match="cannot read its weights"):
        load_state(str(bad), "mobilenet-v2")


def test_pixels_is_the_flattened_view() -> None:
    views = _views("pixels", "flip")
    out = _encoder("pixels").encode(list(views), ["mean", "max"])
    for v, o in zip(views, out, strict=True):
        assert o["mean"].shape == (1, 32 * 32 * 3)
        np.testing.assert_allclose(o["mean"][0], v.reshape(-1) / 255.0, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(o["max"], o["mean"])
