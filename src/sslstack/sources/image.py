"""The image source: files Pillow decodes (PNG, JPEG, WebP, BMP, TIFF), as the views an image
encoder takes.

An image encoder's ``rate`` is its view size ``S`` in pixels: an item is read as one ``(S, S,
3) uint8`` centre view (shorter side resized to ``S / 0.875`` first), or, with ``--tta``, as
several views that the engine encodes and stores like windows (the item's vector is the mean
over views, ``<pool>_wmax`` the max; the views are kept, indexed 0, 1, ...). An item's extent
is its number of views, so a batch of ``--batch-seconds N`` holds ``N`` views (N x S x S
pixels). Decoding, conversion to RGB and the guards are :mod:`sslstack.images`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..images import IMAGE_EXTENSIONS, TTA_VIEWS, image_size, load_views, resize_for
from .base import Settings, Source, Stream

TTA_CROP = {
    "none": "center",
    "flip": "center+flip",
    "five-crop": "five-crop",
    "ten-crop": "ten-crop",
}


def _check(settings: Settings) -> None:
    for flag, value in (("--window", settings.window), ("--max-seconds", settings.max_seconds)):
        if value is not None:
            raise ConfigError(
                f"{flag} {value}: applies to audio items; these are images (see --tta)"
            )


def views_from_key(
    crop: str, window: float | None, hop: float | None, tta: str
) -> tuple[str, float | None, float | None, str]:
    """Settings read back from an image store's key (what ``predict`` passes to ``extract``)
    as the ``--tta`` that made them: ``(crop, window, hop, tta)``; other settings unchanged."""
    named = {v: k for k, v in TTA_CROP.items() if k != "none"}
    if crop in named and window == float(TTA_VIEWS[named[crop]]) and hop in (None, 1.0):
        return "center", None, None, named[crop]
    return crop, window, hop, tta


class ImageSource(Source):
    kind = "image"
    extensions = IMAGE_EXTENSIONS
    unit = "views"

    def extent(self, path: str, rate: int, settings: Settings) -> float:
        if image_size(path) == (0, 0):
            return 0.0  # decoding will say why
        return float(TTA_VIEWS.get(settings.tta, 1))

    def load(self, path: str, rate: int, settings: Settings) -> np.ndarray:
        return load_views(path, rate, resize_for(rate), "none")[0]

    def chunks(
        self, path: str, rate: int, settings: Settings, stream: Stream
    ) -> Iterator[np.ndarray]:
        yield self.load(path, rate, settings)  # an image is never streamed in pieces

    def windows(
        self, path: str, rate: int, settings: Settings
    ) -> Iterator[tuple[float, np.ndarray]]:
        for i, view in enumerate(load_views(path, rate, resize_for(rate), settings.tta)):
            yield float(i), view

    def key_fields(self, rate: int, settings: Settings) -> dict[str, Any]:
        """The view size (as ``sample_rate``) and the views: with ``--tta`` the key's
        ``window`` is the number of views per item and ``hop`` 1, so the store holds them as
        windows (``read_windows``: one row per view, ``start`` = its index) and the
        ``<pool>_wmax`` poolings."""
        _check(settings)
        views = TTA_VIEWS[settings.tta]
        return {
            "sample_rate": rate,
            "window": float(views) if views > 1 else None,
            "hop": 1.0 if views > 1 else None,
            "max_seconds": None,
            "crop": TTA_CROP[settings.tta],
        }
