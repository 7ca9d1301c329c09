"""Synthetic labeled datasets with a fake embedding store, for the classify tests.

Features are Gaussian class clusters whose separation grows with the layer index, so a good
layer exists and a tuner can find it. Nothing reads audio: the manifest points at empty files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sslstack.cache import ItemResult, Store, StoreKey
from sslstack.content import file_sha1
from sslstack.workspace import Workspace


@dataclass
class SynthData:
    ws: Workspace
    csv: Path
    ids: list[str]
    labels: list[str]
    y: np.ndarray
    store: Store
    keys: list[str]  # content hashes of ``ids``: what the store is read by


def make_synth(
    root: Path,
    task: str = "multiclass",
    n: int = 120,
    n_classes: int = 3,
    dim: int = 8,
    layers: int = 4,
    seed: int = 0,
    groups: int | None = None,
    separation: float = 1.5,
    extra_ids: int = 0,
) -> SynthData:
    """A manifest CSV (path,label[,speaker]) and a store of model 'fake' with pools mean,std."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ids = [f"item_{i:04d}.wav" for i in range(n)]
    for i in ids:
        (audio / i).write_text(i)  # distinct content: the store is keyed by content hash
    names = [f"c{j}" for j in range(n_classes)]
    if task == "multilabel":
        y = (rng.random((n, n_classes)) < 0.35).astype(np.int8)
        y[y.sum(axis=1) == 0, rng.integers(0, n_classes)] = 1
        y[0] = 1
        text = [";".join(nm for nm, v in zip(names, row, strict=True) if v) for row in y]
        centers = y.astype(np.float64)
    else:
        if task == "binary":
            names = ["real", "fake"]
            n_classes = 2
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        text = [names[v] for v in y]
        centers = np.eye(n_classes)[y]
    frame = pd.DataFrame({"path": ids, "label": text})
    if groups:
        frame["speaker"] = [f"s{g}" for g in rng.integers(0, groups, n)]
    csv = audio / "train.csv"
    frame.to_csv(csv, index=False)
    ws = Workspace.at(root / "ws")
    proj = rng.normal(size=(centers.shape[1], dim))
    store = Store.open_or_create(
        ws.stores, StoreKey(model="fake", revision="x", sample_rate=16000, pools=("mean", "std"))
    )
    items = []
    all_ids = ids + [f"extra_{i}.wav" for i in range(extra_ids)]
    all_centers = np.concatenate([centers, np.zeros((extra_ids, centers.shape[1]))])
    for r, item in enumerate(all_ids):
        mean = np.stack(
            [
                separation * (la / max(layers - 1, 1)) * all_centers[r] @ proj
                + rng.normal(size=dim)
                for la in range(layers)
            ]
        ).astype(np.float32)
        std = np.abs(rng.normal(size=(layers, dim))).astype(np.float32)
        key = file_sha1(audio / item) if r < n else f"h{r}"
        items.append(ItemResult(item, key, 1.0, {"mean": mean, "std": std}))
    with store.writer() as w:
        w.write(items, layer_names=[str(i) for i in range(layers)])
    keys = [it.hash for it in items[:n]]
    return SynthData(ws, csv, ids, text, y, Store(store.path), keys)
