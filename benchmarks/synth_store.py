"""A synthetic head-tuning task written as a workspace's dataset and store, for the heads
benchmarks: ``make_classification`` rows as items (distinct tiny files: datasets and stores key
items by their content hash) and a store whose layer ``0`` holds the columns split evenly over
``pools``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sslstack.cache import ItemResult, Store, StoreKey
from sslstack.content import file_sha1
from sslstack.workspace import Workspace


def synth_store(
    ws: Workspace, name: str, x: np.ndarray, y: np.ndarray, pools: Sequence[str]
) -> Path:
    """Write the task ``name`` (rows ``x``, classes ``y``) once; its manifest's path."""
    audio = ws.root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ids = [f"s{i:04d}.wav" for i in range(len(y))]
    for i in ids:
        if not (audio / i).exists():
            (audio / i).write_text(i)
    csv = audio / f"{name}.csv"
    pd.DataFrame({"path": ids, "label": [f"c{v:02d}" for v in y]}).to_csv(csv, index=False)
    key = StoreKey(model=name, revision="x", sample_rate=16000, pools=tuple(pools))
    store = Store.open_or_create(ws.stores, key)
    if len(Store(store.path).index) < len(ids):
        cols = np.split(x.astype(np.float32), len(pools), axis=1)
        items = [
            ItemResult(
                i,
                file_sha1(audio / i),
                1.0,
                {p: c[r][None] for p, c in zip(pools, cols, strict=True)},
            )
            for r, i in enumerate(ids)
        ]
        with store.writer() as w:
            w.write(items, layer_names=["0"])
    return csv
