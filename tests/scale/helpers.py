"""What the scale-out tests share: comparing two workspaces' stores, counting stored copies."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from sslstack.embeddings import find_store

ACTOR_TITLE = b"MapWorker(MapBatches(EncoderActor"


def assert_same_store(a: Path, b: Path, model: str, atol: float = 1e-6, **settings: object) -> int:
    """Two workspaces' stores hold the same items: hashes, durations, every pooling of every
    layer and every window equal to ``atol`` (fp32). Returns the number of items (contents)."""
    sa, sb = find_store(model, a, **settings), find_store(model, b, **settings)
    keys = sa.keys()
    assert sb.keys() == keys and keys
    for x, y in zip(sa.read_items(keys), sb.read_items(keys), strict=True):
        assert (x.id, x.hash, x.window_starts) == (y.id, y.hash, y.window_starts)
        assert abs(x.extent - y.extent) < 1e-6
        assert sorted(x.clip) == sorted(y.clip) and sorted(x.windows) == sorted(y.windows)
        for pool in x.clip:
            np.testing.assert_allclose(y.clip[pool], x.clip[pool], rtol=0, atol=atol)
        for pool in x.windows:
            np.testing.assert_allclose(y.windows[pool], x.windows[pool], rtol=0, atol=atol)
    return len(keys)


def stored_copies(ws: Path, model: str) -> Counter[str]:
    """How many times each content is stored across the part files on disk."""
    counts: Counter[str] = Counter()
    for part in (find_store(model, ws).path / "parts").glob("part-*.h5"):
        with h5py.File(part, "r") as f:
            counts.update(f["hashes"].asstr()[:])
    return counts


def encoder_actor_pids() -> list[int]:
    """Processes of Ray's encoder actors (their process title names the actor's class)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if ACTOR_TITLE in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def actors_gone(within: float = 60.0) -> bool:
    """Whether every encoder actor process has ended, waiting up to ``within`` seconds."""
    import time

    deadline = time.monotonic() + within
    while encoder_actor_pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
