"""Encoder outputs -> store items: a clip's vectors as they are, a windowed recording's
per-window vectors plus its clip-level aggregates (``<pool>`` the mean over windows,
``<pool>_wmax`` the max)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cache.item import ItemResult
from ..cache.key import window_pool_name

Partial = dict[int, list[tuple[float | None, dict[str, np.ndarray]]]]


def assemble(
    partial: Partial,
    rows: Sequence[int],
    ids: list[str],
    hashes: dict[str, str],
    durations: dict[int, float],
    pools: Sequence[str],
    windowed: bool,
) -> list[ItemResult]:
    """Turn finished rows (their outputs collected in ``partial``, removed from it) into items."""
    items = []
    for r in rows:
        parts = partial.pop(r)
        if not windowed:
            items.append(ItemResult(ids[r], hashes[ids[r]], durations[r], parts[0][1]))
            continue
        windows = {p: np.stack([o[p] for _, o in parts]) for p in pools}
        clip = {p: windows[p].mean(axis=0) for p in pools}
        clip.update({window_pool_name(p): windows[p].max(axis=0) for p in pools})
        starts = [float(s or 0.0) for s, _ in parts]
        items.append(ItemResult(ids[r], hashes[ids[r]], durations[r], clip, starts, windows))
    return items
