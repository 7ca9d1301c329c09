"""The report's image section: thumbnails of the items a run got most confidently wrong.

Shown when ``report`` is given the image manifest (``--data``): the images are read from the
files that manifest names (never from paths a workspace file holds), as the image source reads
them, shrunk to thumbnails and embedded as PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np

from ..errors import AudioError
from .encoding import Encoding

MAX_SHOWN = 8
THUMB = 96  # pixels, the longer side


def misclassified_section(
    data: str | os.PathLike[str],
    ids: list[str],
    y: np.ndarray,
    P: np.ndarray,
    enc: Encoding,
    figs: list[str],
    img: Callable[[bytes, str, list[str]], str],
) -> str:
    """HTML of up to :data:`MAX_SHOWN` misclassified images, most confident first ("" when
    ``data`` holds no images or the task is multi-label)."""
    from ..manifest import read_manifest

    manifest = read_manifest(data)
    if manifest.kind != "image" or not enc.single_label:
        return ""
    path_of = dict(zip(manifest.ids, manifest.frame["path"].tolist(), strict=True))
    pred = P.argmax(axis=1)
    wrong = [i for i in np.argsort(-P.max(axis=1)) if pred[i] != y[i] and ids[i] in path_of]
    head = "<h3>Misclassified images (out-of-fold, most confident first)</h3>"
    if not wrong:
        return head + "<p>None: every item's top class is its label.</p>"
    shown = []
    for i in wrong[:MAX_SHOWN]:
        png = _thumbnail(path_of[ids[i]])
        if png is None:
            continue
        caption = (
            f"{ids[i]}: {enc.labels[int(y[i])]}, predicted {enc.labels[int(pred[i])]} "
            f"({P[i, pred[i]]:.2f})"
        )
        shown.append(img(png, caption, figs))
    return head + f"<p>{len(wrong)} of {len(ids)} misclassified.</p>" + "".join(shown)


def _thumbnail(path: str) -> bytes | None:
    from PIL import Image

    from ..images import load_image

    try:
        im = Image.fromarray(load_image(path))
    except AudioError:
        return None
    scale = THUMB / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    im = im.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


__all__ = ["misclassified_section"]
