"""Write a bundled real image dataset out as PNG files with a manifest (no download).

    python examples/make_image_data.py lfw OUT      # scikit-image's lfw_subset: 200 greyscale
                                                    # 25x25 crops, 100 faces and 100 non-faces
    python examples/make_image_data.py digits OUT   # scikit-learn's load_digits: 1797 8x8 digits

OUT gets ``img/<name>.png`` and ``manifest.csv`` (path,label,fold): the folds are a stratified
5-fold split (seed 0), so every run, encoder and the stack share them.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedKFold


def _lfw() -> tuple[np.ndarray, list[str]]:
    from skimage.data import lfw_subset

    x = lfw_subset()  # (200, 25, 25) floats in 0..1: the first 100 are faces
    return np.round(x * 255).astype(np.uint8), ["face"] * 100 + ["other"] * 100


def _digits() -> tuple[np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()  # (1797, 8, 8) in 0..16, ink high
    return np.round(d.images * 255 / 16).astype(np.uint8), [str(t) for t in d.target]


def write(name: str, out: Path) -> Path:
    images, labels = {"lfw": _lfw, "digits": _digits}[name]()
    (out / "img").mkdir(parents=True, exist_ok=True)
    folds = np.zeros(len(labels), int)
    split = StratifiedKFold(5, shuffle=True, random_state=0).split(images, labels)
    for k, (_, test) in enumerate(split):
        folds[test] = k
    rows = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        path = f"img/{name}_{i:04d}.png"
        Image.fromarray(img, "L").save(out / path)
        rows.append({"path": path, "label": lab, "fold": int(folds[i])})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "fold"])
        w.writeheader()
        w.writerows(rows)
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("lfw", "digits"):
        sys.exit("usage: make_image_data.py lfw|digits OUT")
    print(write(sys.argv[1], Path(sys.argv[2])))
