"""Images as items: decoding (Pillow), conversion to 8-bit RGB, and the views an encoder sees.

Nothing here knows about encoders beyond the view size they ask for; nothing imports torch.

**One way to RGB.** Every decoded image becomes ``(H, W, 3) uint8`` RGB, after its EXIF
orientation is applied:

- ``1`` (bilevel), ``L`` (greyscale): the grey value in all three channels.
- ``P`` (palette): the palette colours; a palette with transparency is treated as RGBA.
- ``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``: composited over **white** (fully transparent pixels
  become white, half-transparent ones are blended), then the alpha channel is dropped.
- ``CMYK``: Pillow's conversion (no colour management: an embedded ICC profile is ignored;
  Adobe's inverted CMYK JPEGs are already corrected by Pillow's decoder).
- ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion.
- 16-bit and 32-bit integer (``I;16*``, ``I``): ``round(v / 257)``, clipped to 0..255 (a 16-bit
  full-scale value maps to 255); float (``F``): ``round(v * 255)``, clipped, i.e. read as 0..1.

**Guards.** An image with more than ``max_pixels`` pixels (default Pillow's 89.5 million) is
refused from its header before any pixel is decoded (a decompression bomb: a small file that
expands to gigabytes). Truncated or corrupt files raise :class:`ImageError`, a kind of
:class:`~sslstack.errors.AudioError`, so the extractor's ``--on-error skip`` and one-line
message apply to images exactly as to audio.

**Views.** :func:`make_views` resizes the shorter side to ``resize`` (bilinear, antialiased) and
cuts ``size`` x ``size`` crops: the centre (default), plus its mirror (``flip``), the four
corners and the centre (``five-crop``), or those five and their mirrors (``ten-crop``), in that
order. An encoder pools each view; the extractor stores them like windows (the item's vector is
the mean over views, ``<pool>_wmax`` the max), see ``docs/images.md``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioError

if TYPE_CHECKING:  # Pillow is imported when an image is read
    from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF")  # MPO: multi-picture JPEG (cameras)
MAX_PIXELS = 89_478_485  # Pillow's own default limit (about 0.25 GiB of 24-bit RGB)
TTA_VIEWS = {"none": 1, "flip": 2, "five-crop": 5, "ten-crop": 10}
BACKGROUND = (255, 255, 255)  # what transparent pixels become
CROP_PCT = 0.875  # views: the crop is this share of the resized shorter side (ImageNet's 224/256)


class ImageError(AudioError):
    """An image file cannot be decoded, is truncated or corrupt, or is too large.

    A subclass of :class:`AudioError` so that every path that handles an undecodable item
    (``--on-error skip``, the one-line message) handles images the same way.
    """


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from the header alone; (0, 0) when unreadable (decoding will say why)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return 0, 0


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to ``(H, W, 3) uint8`` RGB, EXIF orientation applied.

    Raises:
        ImageError: not a supported image, truncated or corrupt, or more than ``max_pixels``.
    """
    from PIL import Image, ImageOps

    _quiet_pillow_bomb_warning()
    try:
        with Image.open(path) as opened:
            _check_header(path, opened, max_pixels)
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e} (a decompression bomb guard); shrink the image") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise ImageError(f"{path}: cannot decode image ({_reason(e)})") from e


def _quiet_pillow_bomb_warning() -> None:
    """Pillow warns about images over its limit; :func:`_check_header` refuses them (with our
    own ``max_pixels``) before any pixel is decoded, so the warning only adds noise. A filter
    set once, because ``warnings.catch_warnings`` is not thread-safe and images are decoded in
    threads."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if "truncated" in text.lower():
        return f"the file is truncated: {text}"
    return text


def _check_header(path: str | os.PathLike[str], im: Image.Image, max_pixels: int) -> None:
    fmt = getattr(im, "format", None)
    if fmt not in FORMATS:
        raise ImageError(
            f"{path}: {fmt or 'unknown'} images are not read; convert it to PNG or JPEG "
            f"(read: {', '.join(f for f in FORMATS if f != 'MPO')})"
        )
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{path}: the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(
            f"{path}: {w}x{h} = {w * h} pixels is more than the limit of {max_pixels} "
            "(a decompression bomb guard); shrink the image, or raise the limit if you trust it"
        )


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow image as ``(H, W, 3) uint8`` RGB, by the rules in the module docstring."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return _wide_to_rgb(np.asarray(im), mode)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa") or (mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, (*BACKGROUND, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _wide_to_rgb(a: np.ndarray, mode: str) -> np.ndarray:
    x = a.astype(np.float64)
    x = np.round(x * 255.0) if mode == "F" else np.round(x / 257.0)
    g = np.clip(x, 0, 255).astype(np.uint8)
    if g.ndim == 3:  # multi-channel wide modes: keep the first three channels
        return np.ascontiguousarray(g[..., :3] if g.shape[2] >= 3 else np.repeat(g[..., :1], 3, 2))
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))


def check_tta(tta: str) -> str:
    """Validate ``--tta``."""
    from .errors import ConfigError

    if tta not in TTA_VIEWS:
        raise ConfigError(f"--tta {tta}: choose {', '.join(TTA_VIEWS)}")
    return tta


def resize_for(size: int) -> int:
    """The shorter side an image is resized to before its ``size`` crops: ``size / 0.875``
    (ImageNet's 256 for 224), the same rule for every image encoder."""
    return round(size / CROP_PCT)


def resize_shorter(img: np.ndarray, shorter: int) -> np.ndarray:
    """Resize so the shorter side is ``shorter`` pixels (bilinear, antialiased; aspect kept)."""
    from PIL import Image

    h, w = img.shape[:2]
    if min(h, w) == shorter:
        return img
    s = shorter / min(h, w)
    nw, nh = max(shorter, round(w * s)), max(shorter, round(h * s))
    out = Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def _crop(img: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return img[top : top + size, left : left + size]


def make_views(img: np.ndarray, size: int, resize: int, tta: str = "none") -> np.ndarray:
    """The views of one RGB image an encoder pools: ``(V, size, size, 3) uint8``.

    Args:
        img: ``(H, W, 3) uint8`` RGB.
        size: the encoder's input size (square).
        resize: the shorter side before cropping (``>= size``; ``size / 0.875`` is ImageNet's).
        tta: ``none`` (the centre crop), ``flip`` (centre, mirrored centre), ``five-crop``
            (top-left, top-right, bottom-left, bottom-right, centre) or ``ten-crop`` (those
            five, then their mirrors).
    """
    check_tta(tta)
    r = resize_shorter(img, max(resize, size))
    h, w = r.shape[:2]
    centre = _crop(r, (h - size) // 2, (w - size) // 2, size)
    if tta in ("none", "flip"):
        views = [centre] + ([centre[:, ::-1]] if tta == "flip" else [])
    else:
        corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
        views = [_crop(r, t, lft, size) for t, lft in corners] + [centre]
        if tta == "ten-crop":
            views += [v[:, ::-1] for v in views]
    return np.ascontiguousarray(np.stack(views))


def load_views(
    path: str | os.PathLike[str],
    size: int,
    resize: int,
    tta: str = "none",
    *,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """:func:`load_image` then :func:`make_views`; the full-size image is dropped at once, so
    what a batch holds is its views (``V x size x size x 3`` bytes per item)."""
    return make_views(load_image(path, max_pixels=max_pixels), size, resize, tta)
