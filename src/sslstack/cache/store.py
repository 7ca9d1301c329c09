"""The HDF5 embedding store: one folder per :class:`StoreKey`, written as immutable parts.

Layout of a store folder::

    key.json                 the StoreKey and provenance (model, resolved revision, versions, …)
    store.lock               the commit lock (fcntl), holds the committer's pid/host/command
    writers/<token>.json     one lease per live part writer (host, pid, command)
    parts/part-<t>-<host>-<pid>-<token>-<n>-c<crc>.h5

A store is **content-addressed**: a row belongs to the content hash of what was encoded (the
SHA-1 of the item's file), never to a path or an id; datasets map their ids to content hashes
(:func:`sslstack.datasets.item_hashes`). Each part is an HDF5 file written to a temporary
name and renamed into place, so a part either exists complete or not at all: a ``kill -9`` at
any moment leaves a readable store and loses at most the batch in flight. Inside a part::

    attrs: schema, key (JSON), layer_names (JSON list), supersedes (JSON list of part names)
    hashes         (n,)        content hash of each row: the key
    ids            (n,)        a name of each row (the first id it was extracted under)
    extents        (n,)        how much input the encoder saw (seconds of audio);
                               schema-1 parts call it ``durations``
    clip/<pool>    (n, L, D)   pooled embeddings, one row per item, one column per layer;
                               chunks (rows, 1, D) so one layer of all items reads fast
    windows/item   (w,)        row index into hashes, for windowed stores
    windows/start  (w,)        window start in seconds
    windows/<pool> (w, L, D)   per-window pooled embeddings
    failed/ids, failed/hashes, failed/errors   items that could not be decoded

Reading is :mod:`.reader`, writing parts :mod:`.writer` (no lock, many writers), committing
(clean-up and compaction under a brief lock) :mod:`.committer`. Every dataset is checksummed
(:mod:`.parts`): a damaged part is quarantined and its items count as missing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import SslstackWarning, StoreError, StoreLockedError
from ..workspace import atomic_write_json
from .committer import COMPACT_MAX_BYTES, StoreWriter, commit
from .item import ItemResult
from .key import StoreKey
from .leases import live_writers
from .parts import DamagedPart, open_part
from .reader import StoreReader
from .writer import PartWriter

__all__ = ["ItemResult", "Store", "StoreWriter"]


class Store(StoreReader):
    """An embedding store folder: reading (:class:`StoreReader`), writing and committing."""

    @classmethod
    def open_or_create(
        cls,
        root: Path,
        key: StoreKey,
        provenance: Callable[[], dict[str, Any]] | None = None,
        aliases: Sequence[StoreKey] = (),
    ) -> Store:
        """Open the store of ``key`` under ``root`` (the workspace's stores folder), creating it.

        Args:
            aliases: older keys of the same store; when ``key``'s folder does not exist and an
                alias's does, that store is opened (and keeps its key).

        Raises:
            StoreError: the folder exists but holds a different key (both are shown).
        """
        path = root / key.dirname()
        for alias in aliases if not path.exists() else ():
            old = root / alias.dirname()
            if (old / "key.json").exists() and cls(old).key == alias:
                return cls(old)
        meta_path = path / "key.json"
        if meta_path.exists():
            store = cls(path)
            if store.key != key:
                diff = "; ".join(key.differences(store.key))
                raise StoreError(
                    f"{path}: the store's key disagrees with the requested one ({diff}); "
                    "move the folder away or use another --workspace"
                )
            return store
        (path / "parts").mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            meta_path,
            {
                "key": key.to_dict(),
                "provenance": provenance() if provenance else {},
                "created": time.time(),
            },
        )
        return cls(path)

    # ---------------------------------------------------------------- writing
    def writer(self, command: str = "") -> StoreWriter:
        """A part writer that commits when it closes; needs no lock while writing."""
        return StoreWriter(self, command)

    def part_writer(self, command: str = "") -> PartWriter:
        """A part writer that does not commit (a distributed executor's workers use it; the
        driver calls :meth:`commit` once)."""
        return PartWriter(self.path, self.key, command)

    def commit(self, command: str = "commit", *, wait: float | None = None) -> dict[str, int]:
        """Clean up gone writers' files and compact, under the lock (:func:`.commit.commit`)."""
        if wait is None:
            return commit(self, command)
        return commit(self, command, wait=wait)

    def writers(self) -> list[dict[str, Any]]:
        """The live part writers of this store (host, pid, command, token)."""
        return live_writers(self.path)

    def heal(self) -> dict[str, Any]:
        """What every ``extract`` does first: verify the parts (quarantining damaged ones),
        then, when leftovers of a killed writer or compaction exist, commit (skipped quietly
        when another commit holds the lock).

        Returns the leftovers found (as :meth:`leftovers`) and ``set_aside``, the names of the
        parts quarantined now."""
        bad = self.verify()
        left = self.leftovers()
        small = [p for p in self._live_parts() if self._size(p) < COMPACT_MAX_BYTES]
        if left["temporary"] or left["superseded"] or len(small) > 1:
            try:
                self.commit("heal", wait=0.0)
            except StoreLockedError:
                pass  # the commit holding the lock cleans up
            except OSError as e:  # a read-only workspace: the store stays readable as it is
                warnings.warn(
                    f"store {self.path.name}: cannot clean leftovers ({e.strerror}); they stay",
                    SslstackWarning,
                    stacklevel=2,
                )
        self.refresh()
        return {**left, "set_aside": bad}

    def info(self) -> dict[str, Any]:
        """Summary for ``cache ls``: encoder, items, layers, dim, poolings, size on disk."""
        names = self.layer_names
        dim = 0
        for part in reversed(self._parts_seen):
            try:
                with open_part(self.path / "parts" / part) as f:
                    if "clip" in f:
                        dim = int(f[f"clip/{self.key.pools[0]}"].shape[2])
                        break
            except (DamagedPart, FileNotFoundError):
                continue
        size = sum(self._size(p) for p in self._parts_seen)
        waste = self.leftovers()
        return {
            "store": self.path.name,
            "path": str(self.path),
            "model": self.key.model,
            "revision": self.key.revision,
            "items": len(self.index),
            "failed": len(self.failures),
            "layers": len(names),
            "layer_names": names,
            "dim": dim,
            "pools": self.clip_pools(),
            "window": self.key.window,
            "hop": self.key.hop,
            "dtype": self.key.dtype,
            "storage": self.key.storage,
            "parts": len(self._parts_seen),
            "bytes": size,
            "wasted_bytes": waste["wasted_bytes"],
            "leftovers": waste,
        }
