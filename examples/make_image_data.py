"""Write a bundled real image dataset out as PNG files with a manifest (no download).

    python examples/make_image_data.py lfw OUT      # scikit-image's lfw_subset: 200 greyscale
                                                    # 25x25 crops, 100 faces and 100 non-faces
    python examples/make_image_data.py digits OUT   # scikit-learn's load_digits: 1797 8x8 digits

OUT gets ``img/<name>_<i>.png``, ``train.csv`` (path,label,fold: 80 % of the items, in a
stratified 5-fold split, seed 0, which every encoder, head and the stack share) and
``test.csv`` (path,label: the other 20 %, stratified, held out of training for ``predict``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedKFold, train_test_split


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
    paths = []
    for i, img in enumerate(images):
        paths.append(f"img/{name}_{i:04d}.png")
        Image.fromarray(img, "L").save(out / paths[-1])
    rows = np.arange(len(labels))
    train, test = train_test_split(rows, test_size=0.2, stratify=labels, random_state=0)
    folds = np.zeros(len(labels), int)
    y = [labels[i] for i in train]
    for k, (_, part) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(train, y)):
        folds[train[part]] = k
    _csv(out / "train.csv", [[paths[i], labels[i], int(folds[i])] for i in sorted(train)])
    _csv(out / "test.csv", [[paths[i], labels[i]] for i in sorted(test)])
    return out / "train.csv"


def _csv(path: Path, rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "fold"][: len(rows[0])])
        w.writerows(rows)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("lfw", "digits"):
        sys.exit("usage: make_image_data.py lfw|digits OUT")
    print(write(sys.argv[1], Path(sys.argv[2])))
