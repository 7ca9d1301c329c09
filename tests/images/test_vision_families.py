"""Every vision family's tiny random-init model, through sslstack's resolver and encoder, equals a
reference forward: the transformers class run on one view at a time, its hidden states pooled
with numpy (CLS token; mean, std and max over patch tokens or feature-map positions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from sslstack.errors import EncoderError
from sslstack.extract.resolve import resolve_encoder
from sslstack.extract.vision_families import VISION_FAMILIES, vision_names
from sslstack.images import make_views, resize_for

from .tiny_vision import FAMILIES, make_tiny_vision

RNG = np.random.default_rng(1)
IMAGES = [
    RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 48), (36, 36), (50, 33)]
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_vision")


def test_every_registered_family_has_a_tiny_model() -> None:
    assert sorted(FAMILIES) == vision_names()


def _reference(folder: Path, family: str, view: np.ndarray, info: dict) -> dict[str, np.ndarray]:
    fam = VISION_FAMILIES[family]
    model = getattr(tf, fam.model_class).from_pretrained(folder).eval()
    x = (view.astype(np.float64) / 255 - np.array(info["pixel_mean"])) / np.array(info["pixel_std"])
    pv = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        out = model(pixel_values=pv, output_hidden_states=True)
    hs = [h[0].numpy().astype(np.float64) for h in out.hidden_states]
    if info["final"]:
        hs.append(out.last_hidden_state[0].numpy().astype(np.float64))
    width = max(info["layer_dims"])
    rows: list[np.ndarray] = []  # (tokens, D) per stored layer, in the stored order
    for h in hs:
        rows.append(h.reshape(h.shape[0], -1).T if fam.layout == "maps" else h[info["prefix"] :])
    if info["has_cls"]:
        rows += [h[:1] for h in hs]
    pools = {"mean": [], "std": [], "max": []}
    for t in rows:
        for k, v in (("mean", t.mean(0)), ("std", t.std(0)), ("max", t.max(0))):
            pools[k].append(np.pad(v, (0, width - len(v))))
    return {k: np.stack(v) for k, v in pools.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family_equals_reference_forward(root: Path, family: str) -> None:
    folder = make_tiny_vision(family, root)
    spec = resolve_encoder(str(folder))
    assert spec.family == family and spec.input_kind == "image"
    info = spec.info
    assert spec.sample_rate == info["image_size"] and info["resize"] == resize_for(spec.sample_rate)
    enc = spec.load()
    pools = ["mean", "std", "max"]
    views = [make_views(im, info["image_size"], info["resize"])[0] for im in IMAGES]
    got = enc.encode(views, pools)  # one batch of three views
    assert enc.layer_names == info["layers"]
    n_hidden = len([n for n in info["layers"] if not n.startswith("cls")])
    assert info["has_cls"] == (len(info["layers"]) == 2 * n_hidden)
    for view, out in zip(views, got, strict=True):
        ref = _reference(folder, family, view, info)
        for p in pools:
            assert out[p].shape == (len(info["layers"]), max(info["layer_dims"]))
            scale = max(float(np.abs(ref[p]).max()), 1e-6)
            assert float(np.abs(out[p] - ref[p]).max()) <= 2e-5 * scale, (family, p)
    alone = enc.encode(views[1:2], pools)[0]  # batch-invariant: alone equals in a batch
    for p in pools:
        np.testing.assert_allclose(alone[p], got[1][p], rtol=1e-5, atol=1e-5)


def test_cls_layers_are_the_cls_token(root: Path) -> None:
    folder = make_tiny_vision("deit", root)
    spec = resolve_encoder(str(folder))
    assert spec.info["layers"] == ["0", "1", "2", "final", "cls0", "cls1", "cls2", "clsfinal"]
    view = make_views(IMAGES[0], 32, 37)[0]
    out = spec.load().encode([view], ["mean", "max", "std"])[0]
    np.testing.assert_array_equal(out["mean"][4:], out["max"][4:])  # one token: mean = max
    assert (out["std"][4:] == 0).all()


def test_layer_choice_and_geometry(root: Path) -> None:
    spec = resolve_encoder(str(make_tiny_vision("convnext", root)))
    assert (spec.info["image_size"], spec.info["resize"]) == (32, 37)
    assert spec.info["layer_dims"] == [8, 8, 12, 16, 24]
    enc = spec.load(layers=[0, 4])
    view = make_views(IMAGES[0], 32, 37)[0]
    out = enc.encode([view], ["mean"])[0]["mean"]
    full = spec.load().encode([view], ["mean"])[0]["mean"]
    assert enc.layer_names == ["0", "4"] and out.shape == (2, 24)
    np.testing.assert_allclose(out, full[[0, 4]], rtol=1e-6, atol=1e-6)
    assert (out[0, 8:] == 0).all()  # an 8-wide stem is zero-padded to 24
    vit = resolve_encoder(str(make_tiny_vision("vit", root))).info
    assert (vit["image_size"], vit["pixel_mean"], vit["prefix"]) == (32, [0.5] * 3, 1)
    assert resolve_encoder(str(make_tiny_vision("deit", root))).info["prefix"] == 2
    resnet = resolve_encoder(str(make_tiny_vision("resnet", root))).info
    assert (resnet["image_size"], resnet["resize"]) == (224, 256)  # no processor file


def test_views_of_the_wrong_size_are_refused(root: Path) -> None:
    enc = resolve_encoder(str(make_tiny_vision("vit", root))).load()
    with pytest.raises(EncoderError, match=r"views must be 32x32 RGB, got \(16, 16, 3\)"):
        enc.encode([np.zeros((16, 16, 3), np.uint8)], ["mean"])


def test_batch_size_trial_waves_become_views(root: Path) -> None:
    """``--batch-seconds auto`` on CUDA sends 1-D trial waves of k * S samples: k views each."""
    from sslstack.extract.batching import auto_batch_seconds

    enc = resolve_encoder(str(make_tiny_vision("vit", root))).load()
    assert enc.prepare([np.zeros(32 * 3, np.float32)]).shape == (3, 3, 32, 32)

    class Mem:
        def __init__(self) -> None:
            self.n = 0

        def reset_peak(self) -> None: ...

        def peak(self) -> int:
            self.n += 1
            return 1000 * self.n

        def available(self) -> int:
            return 10_000

    runs: list[int] = []

    def run(waves: list[np.ndarray]) -> None:
        runs.append(len(enc.prepare(waves)))

    auto_batch_seconds(run, Mem(), 32, 2.0)  # items of 2 views (--tta flip)
    assert runs == [2, 4]
