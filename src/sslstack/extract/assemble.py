"""Encoder outputs -> store items.

Every unit (a whole item, a window, or a chunk of either) comes back as raw statistics; the
chunks of one item (or window) merge into its statistics (Chan's parallel update, so the
pooling of an item streamed in chunks is the pooling of all its chunks' frames), and only then
are they pooled. A windowed recording's item holds its per-window vectors plus the clip-level
aggregates (``<pool>`` the mean over windows, ``<pool>_wmax`` the max).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cache.key import window_pool_name
from ..cache.store import ItemResult
from .pooling import Stats, pool_stats, stats_of


class Assembler:
    """Statistics of the rows in flight (row -> [(window start, merged statistics)])."""

    def __init__(self, pools: Sequence[str], windowed: bool) -> None:
        self.pools, self.windowed = tuple(pools), windowed
        self.open: dict[int, list[tuple[float | None, Stats]]] = {}

    def add(self, row: int, start: float | None, out: dict[str, np.ndarray]) -> None:
        """One unit's statistics: merged into its window's (or item's) when it continues it."""
        stats = stats_of(out)
        parts = self.open.setdefault(row, [])
        if parts and parts[-1][0] == start:
            parts[-1] = (start, parts[-1][1].merge(stats))
        else:
            parts.append((start, stats))

    def drop(self, row: int) -> None:
        """Forget a row that failed midway (its units so far are not stored)."""
        self.open.pop(row, None)

    def finish(
        self,
        rows: Sequence[int],
        ids: Sequence[str],
        hashes: Sequence[str],
        extents: Sequence[float],
    ) -> list[ItemResult]:
        """Turn finished rows into items (their statistics are removed from :attr:`open`)."""
        rows = [r for r in rows if r in self.open]
        parts = [self.open.pop(r) for r in rows]
        if not self.windowed:
            clips = pool_stats([p[0][1] for p in parts], self.pools)
            return [
                ItemResult(ids[r], hashes[r], extents[r], clip)
                for r, clip in zip(rows, clips, strict=True)
            ]
        items = []
        for r, p in zip(rows, parts, strict=True):
            outs = pool_stats([s for _, s in p], self.pools)
            windows = {k: np.stack([o[k] for o in outs]) for k in self.pools}
            clip = {k: windows[k].mean(axis=0) for k in self.pools}
            clip.update({window_pool_name(k): windows[k].max(axis=0) for k in self.pools})
            starts = [float(s or 0.0) for s, _ in p]
            items.append(ItemResult(ids[r], hashes[r], extents[r], clip, starts, windows))
        return items
