"""What an item *is*, whatever its id: the content hash, and the groups of items that share one.

Leakage checks (folds, ``predict``, ``check``) read the content hash through
:func:`item_hashes` only, so the one place that knows where hashes come from is one function.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from .manifest import Manifest
from .workspace import Workspace


def item_hashes(
    ws: Workspace, dataset: str, manifest: Manifest, *, compute: bool = False
) -> dict[str, str]:
    """``id -> content hash`` of a dataset's items.

    Without ``compute`` only the hashes ``extract`` recorded are read (no audio is touched, so
    it works after the audio is gone); with it, files without a recorded hash are hashed (and
    recorded). Items with neither are absent from the result.
    """
    memo = _recorded(ws, dataset)
    out = {
        i: memo[p] for i, p in zip(manifest.ids, manifest.frame["path"], strict=True) if p in memo
    }
    if compute and len(out) < len(manifest):
        from .extract.plan import content_hashes

        rows = [
            n
            for n, (i, p) in enumerate(zip(manifest.ids, manifest.frame["path"], strict=True))
            if i not in out and os.path.isfile(p)
        ]
        if rows:
            sub = Manifest(
                frame=manifest.frame.iloc[rows].reset_index(drop=True),
                source=manifest.source,
                name=manifest.name,
            )
            out.update(content_hashes(ws, dataset, sub))
    return out


def _recorded(ws: Workspace, dataset: str) -> dict[str, str]:
    """``path -> hash`` from the dataset's memo (``hashes.csv``: path,size,mtime_ns,sha1)."""
    path = ws.dataset_dir(dataset) / "hashes.csv"
    if not path.exists():
        return {}
    memo: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.rsplit(",", 3)
        if len(parts) == 4:
            memo[parts[0]] = parts[3]
    return memo


def duplicate_sets(ids: Sequence[str], hashes: Mapping[str, str]) -> list[list[str]]:
    """Sets of two or more ``ids`` with the same content hash, each in ``ids`` order."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        h = hashes.get(i)
        if h is not None:
            by_hash[h].append(i)
    return [members for members in by_hash.values() if len(members) > 1]


def content_groups(
    ids: Sequence[str], hashes: Mapping[str, str], groups: Sequence[str] | None = None
) -> np.ndarray:
    """One group code per item: items with the same content hash share a code, and so do items
    of the same ``groups`` value (speaker, recording); groups linked through shared content are
    merged (union-find), so no split can separate any of them."""
    parent = list(range(len(ids)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[tuple[str, str], int] = {}
    keys = [("h", hashes[i]) if i in hashes else None for i in ids]
    for n in range(len(ids)):
        for key in (keys[n], None if groups is None else ("g", str(groups[n]))):
            if key is None:
                continue
            m = first.setdefault(key, n)
            ra, rb = find(n), find(m)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(n) for n in range(len(ids))], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1]


__all__ = ["content_groups", "duplicate_sets", "item_hashes"]
