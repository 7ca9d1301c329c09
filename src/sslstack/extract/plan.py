"""The plan of an extraction, made before any model loads: which rows still need the encoder.

Items whose id and audio hash the store holds are skipped; items whose *audio* the store holds
under another id (the same file listed by another path, a test clip that is also a training
clip) are copied from the stored record instead of recomputed; known failures with unchanged
audio are reported again, not retried.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..audio import file_digest
from ..cache.store import Store, StoreWriter
from ..manifest import Manifest
from ..workspace import Workspace, atomic_write_text, checked_text, read_checked_text, read_derived


@dataclass
class Plan:
    """What an extraction will do, row by row of the manifest."""

    todo: list[int]  # rows the encoder must compute
    hashes: dict[str, str]  # id -> SHA-1 of the audio file, for every item
    known_failed: dict[str, str] = field(default_factory=dict)  # id -> stored error
    reuse: dict[str, str] = field(default_factory=dict)  # id -> stored id with the same audio

    @property
    def cached(self) -> int:
        return len(self.hashes) - len(self.todo) - len(self.known_failed) - len(self.reuse)


def _hash_memo_path(ws: Workspace, dataset: str) -> Path:
    return ws.dataset_dir(dataset) / "hashes.csv"


def read_hash_memo(path: Path) -> dict[str, tuple[int, int, str]]:
    """The memo ``path -> (size, mtime_ns, sha1)`` (raises on any damage: see read_derived)."""
    memo: dict[str, tuple[int, int, str]] = {}
    for line in read_checked_text(path).splitlines()[1:]:
        path_, size, mtime, digest = line.rsplit(",", 3)
        if len(digest) != 40 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"bad digest {digest!r}")
        memo[path_] = (int(size), int(mtime), digest)
    return memo


def content_hashes(ws: Workspace, dataset: str, manifest: Manifest) -> dict[str, str]:
    """SHA-1 of every file, reusing the memo when size and mtime are unchanged."""
    memo_path = _hash_memo_path(ws, dataset)
    memo = read_derived(memo_path, read_hash_memo) or {}  # damaged: set aside and rebuilt
    out: dict[str, str] = {}
    changed = False
    for item, path in zip(manifest.ids, manifest.frame["path"], strict=True):
        st = os.stat(path)
        hit = memo.get(path)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            out[item] = hit[2]
            continue
        digest = file_digest(path)
        memo[path] = (st.st_size, st.st_mtime_ns, digest)
        out[item] = digest
        changed = True
    if changed:
        rows = ["path,size,mtime_ns,sha1"] + [f"{p},{s},{m},{d}" for p, (s, m, d) in memo.items()]
        atomic_write_text(memo_path, checked_text("\n".join(rows) + "\n"))
    return out


def make_plan(store: Store, manifest: Manifest, ws: Workspace, dataset: str) -> Plan:
    """Rows still to compute, every item's hash, known failures, and items to copy by audio."""
    hashes = content_hashes(ws, dataset, manifest)
    stored = store.hashes()
    by_audio = {h: i for i, h in stored.items()}
    failed = store.failures
    plan = Plan([], hashes)
    for row, item in enumerate(manifest.ids):
        h = hashes[item]
        if stored.get(item) == h:
            continue
        if h in by_audio:
            plan.reuse[item] = by_audio[h]
        elif item in failed and failed[item][0] == h:
            plan.known_failed[item] = failed[item][1]
        else:
            plan.todo.append(row)
    return plan


def copy_reused(store: Store, plan: Plan, writer: StoreWriter) -> int:
    """Write the stored records of ``plan.reuse`` under their new ids; returns how many."""
    if not plan.reuse:
        return 0
    items = list(plan.reuse.items())
    records = store.read_items([src for _, src in items])
    copies = [replace(rec, id=new) for (new, _), rec in zip(items, records, strict=True)]
    writer.write(copies, store.layer_names)
    return len(copies)
