"""The image source: every mode to RGB in the one documented way, EXIF orientation, the
decompression-bomb guard, truncated and corrupt files as one-line errors, and the TTA views."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslstack.errors import AudioError, ConfigError
from sslstack.images import (
    ImageError,
    image_size,
    is_image_path,
    load_image,
    load_views,
    make_views,
    to_rgb,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def _save(tmp_path: Path, im: Image.Image, name: str, **kw: object) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


@pytest.mark.parametrize(
    "ext,fmt", [("png", "PNG"), ("bmp", "BMP"), ("tiff", "TIFF"), ("webp", "WEBP")]
)
def test_lossless_formats_round_trip(tmp_path: Path, ext: str, fmt: str) -> None:
    kw = {"lossless": True} if fmt == "WEBP" else {}
    p = _save(tmp_path, Image.fromarray(RGB), f"a.{ext}", format=fmt, **kw)
    assert is_image_path(p)
    assert image_size(p) == (20, 12)
    np.testing.assert_array_equal(load_image(p), RGB)


def test_jpeg_decodes_close(tmp_path: Path) -> None:
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, 0)
    img = np.repeat(smooth, 3, 2)
    p = _save(tmp_path, Image.fromarray(img), "a.jpg", quality=95)
    out = load_image(p)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).max() <= 4


def test_greyscale_and_bilevel_repeat_the_grey_value() -> None:
    g = RGB[..., 0]
    np.testing.assert_array_equal(to_rgb(Image.fromarray(g, "L")), np.repeat(g[..., None], 3, 2))
    bits = Image.fromarray((g > 127).astype(np.uint8) * 255, "L").convert("1")
    out = to_rgb(bits)
    np.testing.assert_array_equal(out[..., 1], np.where(g > 127, 255, 0))
    assert (out[..., 0] == out[..., 2]).all()


def test_palette_uses_its_colours_and_transparency_becomes_white() -> None:
    p = Image.fromarray(RGB).quantize(8)
    np.testing.assert_array_equal(to_rgb(p), np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    out = to_rgb(p)
    idx = np.asarray(p)
    assert (out[idx == 0] == 255).all()
    np.testing.assert_array_equal(out[idx != 0], np.asarray(p.convert("RGB"))[idx != 0])


def test_rgba_is_composited_over_white() -> None:
    alpha = np.zeros((12, 20), np.uint8)
    alpha[:, 5:10] = 255
    alpha[:, 10:15] = 128
    im = Image.fromarray(np.dstack([RGB, alpha]), "RGBA")
    out = to_rgb(im).astype(int)
    assert (out[:, :5] == 255).all()  # transparent -> white
    np.testing.assert_array_equal(out[:, 5:10], RGB[:, 5:10])  # opaque -> itself
    blend = (RGB[:, 10:15].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(out[:, 10:15] - blend).max() <= 1
    la = Image.fromarray(np.dstack([RGB[..., 0], alpha]), "LA")
    assert (to_rgb(la)[:, :5] == 255).all()


def test_cmyk_is_pillows_conversion(tmp_path: Path) -> None:
    cmyk = Image.fromarray(RGB).convert("CMYK")
    p = _save(tmp_path, cmyk, "c.jpg", quality=100)
    ref = np.asarray(Image.open(p).convert("RGB"))
    np.testing.assert_array_equal(load_image(p), ref)
    np.testing.assert_array_equal(to_rgb(cmyk), np.asarray(cmyk.convert("RGB")))


def test_16_bit_greyscale_scales_by_257(tmp_path: Path) -> None:
    v = np.array([[0, 257, 65535, 32896, 1000]], np.uint16)
    for fmt in ("PNG", "TIFF"):
        p = _save(tmp_path, Image.fromarray(v), f"w.{fmt.lower()}", format=fmt)
        out = load_image(p)
        np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128, 4])
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_float_images_read_as_0_to_1() -> None:
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32), "F")
    np.testing.assert_array_equal(to_rgb(f)[0, :, 0], [0, 128, 255, 255, 0])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.fromarray(RGB)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = _save(tmp_path, im, "o.png", exif=exif)
    out = load_image(p)
    assert out.shape == (20, 12, 3)
    np.testing.assert_array_equal(out, np.rot90(RGB, k=-1))


def test_truncated_jpeg_is_one_line_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError) as e:
        load_image(p)
    msg = str(e.value)
    assert "\n" not in msg and "cut.jpg" in msg and "truncated" in msg
    assert isinstance(e.value, AudioError)  # --on-error skip handles it as any bad item


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_files_are_one_line_errors(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(data)
    with pytest.raises(ImageError, match=r"bad\.png: cannot decode image") as e:
        load_image(p)
    assert "\n" not in str(e.value)


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    p = _save(tmp_path, Image.fromarray(RGB), "a.gif", format="GIF")
    with pytest.raises(ImageError, match="GIF images are not read; convert it to PNG or JPEG"):
        load_image(p)


def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    # 10000 x 10000 of one colour: a 2.4 kB PNG that decodes to 300 MB
    p = _save(tmp_path, Image.new("L", (10000, 10000)), "bomb.png", optimize=True)
    assert p.stat().st_size < 200_000
    with pytest.raises(ImageError, match=r"bomb\.png: 10000x10000 = 100000000 pixels is more"):
        load_image(p)
    small = _save(tmp_path, Image.fromarray(RGB), "small.png")
    with pytest.raises(ImageError, match="decompression bomb guard"):
        load_image(small, max_pixels=100)
    assert load_image(small, max_pixels=240).shape == (12, 20, 3)


# --- views -----------------------------------------------------------------------------------


def _ramp(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([y % 256, x % 256, (x + y) % 256]).astype(np.uint8)


def test_centre_crop_after_shorter_side_resize() -> None:
    img = _ramp(40, 60)
    v = make_views(img, 40, 40)  # no resize: the centre 40x40 of 60 columns
    assert v.shape == (1, 40, 40, 3)
    np.testing.assert_array_equal(v[0], img[:, 10:50])
    small = make_views(np.zeros((25, 25, 3), np.uint8) + 7, 16, 18)
    assert small.shape == (1, 16, 16, 3) and (small == 7).all()


def test_tta_views_in_the_documented_order() -> None:
    img = _ramp(30, 40)
    size = 20
    flip = make_views(img, size, 30, "flip")
    centre = img[5:25, 10:30]
    np.testing.assert_array_equal(flip[0], centre)
    np.testing.assert_array_equal(flip[1], centre[:, ::-1])
    five = make_views(img, size, 30, "five-crop")
    expect = [img[:20, :20], img[:20, 20:], img[10:, :20], img[10:, 20:], centre]
    for got, want in zip(five, expect, strict=True):
        np.testing.assert_array_equal(got, want)
    ten = make_views(img, size, 30, "ten-crop")
    assert ten.shape == (10, 20, 20, 3)
    np.testing.assert_array_equal(ten[:5], five)
    np.testing.assert_array_equal(ten[5:], five[:, :, ::-1])
    with pytest.raises(ConfigError, match="--tta six: choose none, flip, five-crop, ten-crop"):
        make_views(img, size, 30, "six")


def test_load_views_reads_and_cuts(tmp_path: Path) -> None:
    p = _save(tmp_path, Image.fromarray(_ramp(30, 40)), "r.png")
    np.testing.assert_array_equal(
        load_views(p, 20, 30, "five-crop"), make_views(_ramp(30, 40), 20, 30, "five-crop")
    )
