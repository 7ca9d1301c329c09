"""The plan of an extraction, made before any model loads: which rows still need the encoder.

The store is keyed by content hash, so a row is done when the store holds its content, under
whatever name and from whatever dataset. Of several rows with one content (the same file
listed twice, a test clip that is also a training clip) only the first is computed: the others
are *reused*. Known failures with unchanged content are reported again, not retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cache import Store
from ..datasets import item_hashes
from ..manifest import Manifest
from ..workspace import Workspace


@dataclass
class Plan:
    """What an extraction will do, row by row of the manifest."""

    todo: list[int]  # rows the encoder must compute (one per content)
    hashes: dict[str, str]  # id -> content hash, for every item
    known_failed: dict[str, str] = field(default_factory=dict)  # id -> stored error
    reuse: dict[str, str] = field(default_factory=dict)  # id -> the other name of its content

    @property
    def cached(self) -> int:
        return len(self.hashes) - len(self.todo) - len(self.known_failed) - len(self.reuse)


def make_plan(store: Store, manifest: Manifest, ws: Workspace, dataset: str) -> Plan:
    """Rows still to compute, every item's content hash, known failures, and items whose
    content is stored (or computed in this run) under another name."""
    hashes = item_hashes(ws, dataset)
    names = store.names()
    failed = store.failures
    plan = Plan([], {i: hashes[i] for i in manifest.ids})
    first: dict[str, str] = {}  # content -> the first id of this run computing it
    for row, item in enumerate(manifest.ids):
        h = hashes[item]
        if h in names:
            if names[h] != item:
                plan.reuse[item] = names[h]
        elif h in first:
            plan.reuse[item] = first[h]
        elif h in failed:
            plan.known_failed[item] = failed[h][1]
        else:
            first[h] = item
            plan.todo.append(row)
    return plan
