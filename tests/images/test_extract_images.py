"""Images through the whole engine: extract (folder and manifest, views, --tta stored like
windows, bad files, kinds refused in one line), then probe, fit-head, stack, predict and report
unchanged, through the Python API."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sslstack import extract, find_store, load_embeddings
from sslstack.errors import AudioError, ConfigError, ManifestError
from sslstack.images import load_views, make_views

RNG = np.random.default_rng(3)


def _image(label: str) -> np.ndarray:
    img = RNG.integers(0, 90, (28 + RNG.integers(0, 12), 30, 3), dtype=np.uint8)
    h = img.shape[0] // 2
    if label == "top":
        img[:h] += 150
    else:
        img[h:] += 150
    return img


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for label in ("top", "bottom"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(_image(label)).save(root / label / f"{i:02d}.{ext}")
    return root


def _manifest(folder: Path, rows: list[tuple[str, str]], name: str = "m.csv") -> Path:
    p = folder.parent / name
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(p, index=False)
    return p


def test_folder_extract_stores_the_centre_view(folder: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    res = extract(folder, "pixels", workspace=ws, pools="mean,max")
    assert (res.items, res.computed, res.failed) == (24, 24, [])
    ids, x = load_embeddings("pixels", 0, "mean", ws)
    assert x.shape == (24, 3072)
    for i in (0, 13):
        want = load_views(folder / ids[i], 32, 37)[0].reshape(-1) / 255.0
        np.testing.assert_allclose(x[i], want, atol=1e-3)  # float16 storage
    again = extract(folder, "pixels", workspace=ws, pools="mean,max")
    assert (again.computed, again.cached, again.model_loaded) == (0, 24, False)


def test_tta_views_pool_as_mean_and_max_and_are_kept(folder: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    extract(folder, "pixels", workspace=ws, tta="flip", storage="float32")
    store = find_store("pixels", ws)
    assert (store.key.window, store.key.crop) == (2.0, "center+flip")
    ids, mean = store.read(0, "mean")  # content hashes; names() gives the ids they came as
    _, wmax = store.read(0, "mean_wmax")
    win_ids, starts, views = store.read_windows(0, "mean")
    names = store.names()
    for i in (0, 7):
        img = Image.open(folder / names[ids[i]]).convert("RGB")
        v = make_views(np.asarray(img), 32, 37, "flip")
        flat = v.reshape(2, -1) / 255.0
        np.testing.assert_allclose(mean[i], flat.mean(0), atol=1e-6)
        np.testing.assert_allclose(wmax[i], flat.max(0), atol=1e-6)
        rows = [j for j, w in enumerate(win_ids) if w == ids[i]]
        assert list(starts[rows]) == [0.0, 1.0]
        np.testing.assert_allclose(views[rows], flat, atol=1e-6)
    plain = extract(folder, "pixels", workspace=ws, storage="float32")
    assert plain.store != store.path.name  # views are part of the store key


def test_bad_images_stop_or_skip_in_one_line(folder: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_image("top")).save(buf, "JPEG")
    (folder / "top" / "cut.jpg").write_bytes(buf.getvalue()[:300])
    (folder / "top" / "junk.png").write_bytes(b"junk")
    ws = tmp_path / "ws"
    with pytest.raises(AudioError) as e:
        extract(folder, "pixels", workspace=ws, workers=0)
    assert "\n" not in str(e.value) and "cannot decode image" in str(e.value)
    assert "--on-error skip" in str(e.value)
    res = extract(folder, "pixels", workspace=ws, on_error="skip")
    failed = {f["id"]: f["error"] for f in res.failed}
    assert set(failed) == {"top/cut.jpg", "top/junk.png"}
    assert "truncated" in failed["top/cut.jpg"]
    assert res.computed + res.cached == 24


def test_mixed_and_mismatched_kinds_are_refused(folder: Path, tmp_path: Path) -> None:
    wav = folder.parent / "a.wav"
    wav.write_bytes(b"RIFF")
    mixed = _manifest(folder, [("imgs/top/00.jpg", "top"), ("a.wav", "x")])
    with pytest.raises(ManifestError, match=r"several kinds: image \(00\.jpg\), audio \(a\.wav\)"):
        extract(mixed, "pixels", workspace=tmp_path / "ws")
    imgs = _manifest(folder, [("imgs/top/00.jpg", "top")], "i.csv")
    with pytest.raises(ConfigError, match="--model logmel takes audio items, but .* image items"):
        extract(imgs, "logmel", workspace=tmp_path / "ws")
    with pytest.raises(ConfigError, match="--window 2.0: applies to audio items; these are images"):
        extract(imgs, "pixels", workspace=tmp_path / "ws", window=2.0)
    wavs = _manifest(folder, [("a.wav", "x")], "w.csv")
    with pytest.raises(ConfigError, match="--tta flip: applies to image items; these are audio"):
        extract(wavs, "logmel", workspace=tmp_path / "ws", tta="flip")
