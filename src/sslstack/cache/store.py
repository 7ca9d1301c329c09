"""The HDF5 embedding store: one folder per :class:`StoreKey`, written as immutable parts.

Layout of a store folder::

    key.json                 the StoreKey and provenance (model, resolved revision, versions, …)
    store.lock               advisory write lock (fcntl), holds the writer's pid/host/command
    parts/part-<t>-<pid>-<n>.h5

Each part is an HDF5 file written to a temporary name and renamed into place, so a part either
exists complete or not at all: a ``kill -9`` at any moment leaves a readable store and loses at
most the batch in flight. Inside a part::

    attrs: schema, key (JSON), layer_names (JSON list), supersedes (JSON list of part names)
    ids            (n,)        item ids (utf-8)
    hashes         (n,)        SHA-1 of each item's audio file
    durations      (n,)        seconds of audio seen by the encoder
    clip/<pool>    (n, L, D)   pooled embeddings, one row per item, one column per layer;
                               chunks (rows, 1, D) so one layer of all items reads fast
    windows/item   (w,)        row index into ids, for windowed stores
    windows/start  (w,)        window start in seconds
    windows/<pool> (w, L, D)   per-window pooled embeddings
    failed/ids, failed/hashes, failed/errors   items that could not be decoded

Readers take every part not listed in another part's ``supersedes``; where an id appears in
several parts the newest (by name) wins. Compaction merges small parts into one new part that
supersedes them, then deletes them.

Every dataset is checksummed (see :mod:`sslstack.cache.parts`): a part that is truncated,
damaged or has flipped bits is quarantined and its items count as missing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import DamagedFileError, SslstackWarning, StoreError, StoreLockedError
from ..workspace import atomic_write_json, read_json
from .key import StoreKey, window_pool_name
from .parts import (
    DamagedPart,
    attr_json,
    leftovers,
    open_part,
    quarantine,
    verify_part,
)
from .writer import COMPACT_MAX_BYTES, StoreWriter

T = TypeVar("T")


@dataclass
class ItemResult:
    """What the extractor hands the store for one item."""

    id: str
    hash: str
    duration: float
    clip: dict[str, np.ndarray]  # pool -> (L, D)
    window_starts: list[float] = field(default_factory=list)
    windows: dict[str, np.ndarray] = field(default_factory=dict)  # pool -> (w, L, D)


@dataclass
class _Loc:
    part: str
    row: int


_REDO = "move the store's folder away and run 'sslstack extract' again"


class Store:
    """An embedding store folder. Opening reads only ``key.json``; data is read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "key.json"
        if not meta_path.exists():
            raise StoreError(f"{self.path}: not an sslstack store (no key.json)")
        meta = read_json(meta_path)
        try:  # a damaged key.json is one line naming it (issue 18), never a KeyError
            self.key = StoreKey.from_dict(meta["key"])
            self.provenance: dict[str, Any] = dict(meta.get("provenance") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DamagedFileError(meta_path, f"damaged ({e!r})", _REDO) from None
        self._index: dict[str, _Loc] | None = None
        self._failed: dict[str, tuple[str, str]] | None = None
        self._parts_seen: tuple[str, ...] = ()
        self._layer_names: list[str] | None = None
        self._quarantined: set[str] = set()

    # ---------------------------------------------------------------- creation
    @classmethod
    def open_or_create(
        cls, root: Path, key: StoreKey, provenance: Callable[[], dict[str, Any]] | None = None
    ) -> Store:
        """Open the store of ``key`` under ``root`` (the workspace's stores folder), creating it.

        Raises:
            StoreError: the folder exists but holds a different key (both are shown).
        """
        path = root / key.dirname()
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

    # ---------------------------------------------------------------- reading
    def _part_names(self) -> list[str]:
        parts = self.path / "parts"
        return sorted(p.name for p in parts.glob("part-*.h5")) if parts.exists() else []

    def _live_parts(self) -> list[str]:
        names = self._part_names()
        superseded: set[str] = set()
        damaged: list[str] = []
        for name in names:
            try:
                with open_part(self.path / "parts" / name) as f:
                    superseded.update(attr_json(f, "supersedes", []))
            except DamagedPart as e:
                self._set_aside(e)
                damaged.append(name)
        return [n for n in names if n not in superseded and n not in damaged]

    def _set_aside(self, e: DamagedPart) -> None:
        """Quarantine a damaged part (once per process and part)."""
        if e.name not in self._quarantined:
            self._quarantined.add(e.name)
            quarantine(self.path, e.name, e.reason)

    def _damaged(self, e: DamagedPart) -> StoreError:
        """Quarantine a part found damaged while reading data; the one-line error to raise."""
        self._set_aside(e)
        self._index = None
        return StoreError(
            f"store {self.path.name}: part {e.name} is damaged ({e.reason}) and was set aside "
            f"in {self.path / 'quarantine'}; its items are missing now: run 'sslstack extract' "
            "again to recompute them"
        )

    def verify(self) -> list[str]:
        """Read every byte of every live part (checksums verified); quarantine damaged parts.

        Returns the names of the parts set aside. Costs one full read of the store
        (docs/benchmarks.md has the figures).
        """
        bad = []
        for name in self._live_parts():
            try:
                verify_part(self.path / "parts" / name)
            except FileNotFoundError:
                continue
            except DamagedPart as e:
                self._set_aside(e)
                bad.append(name)
        if bad:
            self._index = None
        return bad

    def leftovers(self) -> dict[str, Any]:
        """Temporary, superseded and quarantined files: counts and wasted bytes."""
        return leftovers(self.path, self._live_parts(), self._part_names())

    def heal(self) -> dict[str, Any]:
        """What every ``extract`` does first: verify the parts (quarantining damaged ones),
        then, when leftovers of a killed writer or compaction exist, take the write lock and
        clean and compact (skipped quietly when another writer holds the lock).

        Returns the leftovers found (as :meth:`leftovers`) and ``set_aside``, the names of the
        parts quarantined now."""
        bad = self.verify()
        left = self.leftovers()
        small = [p for p in self._live_parts() if self._size(p) < COMPACT_MAX_BYTES]
        if left["temporary"] or left["superseded"] or len(small) > 1:
            try:
                with self.writer("heal"):
                    pass  # entering removes temporary parts; leaving compacts
            except StoreLockedError:
                pass  # the writer holding the lock cleans up when it finishes
            except OSError as e:  # a read-only workspace: the store stays readable as it is
                warnings.warn(
                    f"store {self.path.name}: cannot clean leftovers ({e.strerror}); they stay",
                    SslstackWarning,
                    stacklevel=2,
                )
        self.refresh()
        return {**left, "set_aside": bad}

    def _size(self, name: str) -> int:
        try:
            return (self.path / "parts" / name).stat().st_size
        except FileNotFoundError:
            return 0

    def refresh(self) -> None:
        """Re-read the list of parts (after a write by this or another process)."""
        for attempt in range(5):
            try:
                self._build_index()
                return
            except FileNotFoundError:
                # a concurrent compaction removed a part between listing and opening: relist
                time.sleep(0.05 * (attempt + 1))
        self._build_index()

    def _again_if_gone(self, read: Callable[[], T]) -> T:
        """``read()``; when a concurrent compaction deleted a part the index names, re-list
        the parts and read again (the merged part holds the same values)."""
        for attempt in range(5):
            try:
                return read()
            except FileNotFoundError:
                time.sleep(0.05 * attempt)
                self.refresh()
        return read()

    def _build_index(self) -> None:
        index: dict[str, _Loc] = {}
        failed: dict[str, tuple[str, str]] = {}
        live = self._live_parts()
        layer_names = None
        kept = []
        for name in live:  # oldest first: a later part overrides an earlier one
            try:
                layer_names = self._index_part(name, index, failed, layer_names)
                kept.append(name)
            except DamagedPart as e:
                self._set_aside(e)
        self._index, self._failed, self._parts_seen = index, failed, tuple(kept)
        self._layer_names = layer_names

    def _index_part(
        self,
        name: str,
        index: dict[str, _Loc],
        failed: dict[str, tuple[str, str]],
        layer_names: list[str] | None,
    ) -> list[str] | None:
        """Add one part's ids and failures to the index (read fully before any is added)."""
        with open_part(self.path / "parts" / name) as f:
            names = attr_json(f, "layer_names", None)
            ids = f["ids"].asstr()[:]
            f["hashes"].asstr()[:]  # read (and checksum) what later reads rely on
            fails: list[tuple[str, str, str]] = []
            if "failed" in f:
                fails = list(
                    zip(
                        f["failed/ids"].asstr()[:],
                        f["failed/hashes"].asstr()[:],
                        f["failed/errors"].asstr()[:],
                        strict=True,
                    )
                )
        for row, item in enumerate(ids):
            index[item] = _Loc(name, row)
            failed.pop(item, None)
        for item, h, err in fails:
            if item in index and index[item].part == name:
                continue
            failed[item] = (h, err)
            index.pop(item, None)  # a newer attempt failed: the old vector is stale
        return layer_names if layer_names is not None else names

    @property
    def index(self) -> dict[str, _Loc]:
        if self._index is None:
            self.refresh()
        assert self._index is not None
        return self._index

    @property
    def failures(self) -> dict[str, tuple[str, str]]:
        """id -> (hash, error) of items whose latest attempt failed."""
        if self._failed is None:
            self.refresh()
        assert self._failed is not None
        return {i: v for i, v in self._failed.items() if i not in self.index}

    def ids(self) -> list[str]:
        """Stored item ids, sorted."""
        return sorted(self.index)

    def hashes(self) -> dict[str, str]:
        """id -> content hash of every stored item."""
        return self._again_if_gone(self._hashes)

    def _hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        by_part: dict[str, list[tuple[str, int]]] = {}
        for item, loc in self.index.items():
            by_part.setdefault(loc.part, []).append((item, loc.row))
        for part, rows in by_part.items():
            try:
                with open_part(self.path / "parts" / part) as f:
                    hs = f["hashes"].asstr()[:]
            except DamagedPart as e:
                self._set_aside(e)  # its items are left out: missing, so recomputed
                continue
            for item, row in rows:
                out[item] = hs[row]
        return out

    @property
    def layer_names(self) -> list[str]:
        if self._index is None:
            self.refresh()
        return list(self._layer_names or [])

    def layer_index(self, layer: int | str) -> int:
        """Column of ``layer`` (a hidden-state index like 12, or a name like ``"final"``)."""
        names = self.layer_names
        if not names:
            gone = " (its damaged parts were set aside in quarantine/)" if self._quarantined else ""
            raise StoreError(
                f"{self.path.name}: the store holds no embeddings{gone}; run 'sslstack extract' "
                "to compute them"
            )
        key = str(layer)
        if key in names:
            return names.index(key)
        if isinstance(layer, int) and layer < 0 and -layer <= len(names):
            return len(names) + layer
        raise StoreError(
            f"{self.path.name}: no layer {layer!r}; the store holds layers {', '.join(names)}"
        )

    def _check_pool(self, pool: str, windows: bool = False) -> None:
        avail = self.clip_pools() if not windows else list(self.key.pools)
        if pool not in avail:
            raise StoreError(
                f"{self.path.name}: no pooling '{pool}'; the store holds {', '.join(avail)}"
            )

    def clip_pools(self) -> list[str]:
        """Clip-level poolings: the key's pools, plus ``<pool>_wmax`` for windowed stores."""
        pools = list(self.key.pools)
        if self.key.window is not None:
            pools += [window_pool_name(p) for p in self.key.pools]
        return pools

    def read(
        self, layer: int | str, pool: str = "mean", ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """One layer and pooling of the chosen items (all when ``ids`` is None) as float32.

        Raises:
            StoreError: unknown layer or pooling, or ids the store does not hold (named).
        """
        return self._again_if_gone(lambda: self._read(layer, pool, ids))

    def _check_ids(self, want: Sequence[str]) -> None:
        missing = [i for i in want if i not in self.index]
        if missing:
            raise StoreError(
                f"{self.path.name}: {len(missing)} of {len(want)} item(s) have no embeddings "
                f"(first: {', '.join(missing[:5])}); run 'sslstack extract' on them first"
            )

    def _read(
        self, layer: int | str, pool: str, ids: Sequence[str] | None
    ) -> tuple[list[str], np.ndarray]:
        self._check_pool(pool)
        col = self.layer_index(layer)
        want = self.ids() if ids is None else list(ids)
        self._check_ids(want)
        out: np.ndarray | None = None
        by_part: dict[str, tuple[list[int], list[int]]] = {}
        for pos, item in enumerate(want):
            loc = self.index[item]
            dst, src = by_part.setdefault(loc.part, ([], []))
            dst.append(pos)
            src.append(loc.row)
        for part, (dst, src) in by_part.items():
            try:
                rows = self._read_rows(part, pool, col, src)
            except DamagedPart as e:
                raise self._damaged(e) from None
            if out is None:
                out = np.empty((len(want), rows.shape[1]), dtype=np.float32)
            out[np.asarray(dst)] = rows
        if out is None:
            out = np.zeros((0, 0), dtype=np.float32)
        return want, out

    def read_items(self, ids: Sequence[str]) -> list[ItemResult]:
        """The whole stored records of ``ids`` (every pooling, layer and window, as float32), in
        the form the writer takes them: what extraction copies when the same audio comes back
        under another id."""
        return self._again_if_gone(lambda: self._read_items(ids))

    def _read_items(self, ids: Sequence[str]) -> list[ItemResult]:
        self._check_ids(ids)
        by_part: dict[str, list[tuple[str, int]]] = {}
        for item in ids:
            loc = self.index[item]
            by_part.setdefault(loc.part, []).append((item, loc.row))
        out: dict[str, ItemResult] = {}
        for part, rows in by_part.items():
            with open_part(self.path / "parts" / part) as f:
                hashes, durations = f["hashes"].asstr()[:], f["durations"][:]
                win_of = f["windows/item"][:] if "windows" in f else None
                win_pools = (
                    [p for p in f["windows"] if p not in ("item", "start")]
                    if win_of is not None
                    else []
                )
                for item, row in rows:
                    clip = {p: f[f"clip/{p}"][row].astype(np.float32) for p in f["clip"]}
                    starts: list[float] = []
                    windows: dict[str, np.ndarray] = {}
                    if win_of is not None:
                        sel = np.flatnonzero(win_of == row)
                        starts = [float(s) for s in f["windows/start"][sel]]
                        windows = {p: f[f"windows/{p}"][sel].astype(np.float32) for p in win_pools}
                    out[item] = ItemResult(
                        item, hashes[row], float(durations[row]), clip, starts, windows
                    )
        return [out[i] for i in ids]

    def _read_rows(self, part: str, pool: str, col: int, src: list[int]) -> np.ndarray:
        with open_part(self.path / "parts" / part) as f:
            ds = f[f"clip/{pool}"]
            if len(src) > ds.shape[0] // 2:
                return ds[:, col, :][np.asarray(src)]
            order = np.argsort(src)
            srt = np.asarray(src)[order]
            rows = np.empty((len(src), ds.shape[2]), dtype=ds.dtype)
            rows[order] = ds[srt, col, :]
            return rows

    def read_windows(
        self, layer: int | str, pool: str = "mean", ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Per-window embeddings: (item id per window, start seconds, (w, D) float32)."""
        return self._again_if_gone(lambda: self._read_windows(layer, pool, ids))

    def _read_windows(
        self, layer: int | str, pool: str, ids: Sequence[str] | None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        if self.key.window is None:
            raise StoreError(f"{self.path.name}: not a windowed store (extract with --window)")
        self._check_pool(pool, windows=True)
        col = self.layer_index(layer)
        if ids is not None:
            self._check_ids(ids)  # an id without a vector must not reach the part's lookup
        wanted = set(self.index if ids is None else ids)
        out_ids: list[str] = []
        starts: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for part in self._parts_seen:
            try:
                got = self._read_part_windows(part, pool, col, wanted)
            except DamagedPart as e:
                raise self._damaged(e) from None
            if got is not None:
                out_ids += got[0]
                starts.append(got[1])
                vecs.append(got[2])
        if not vecs:
            return [], np.zeros(0), np.zeros((0, 0), dtype=np.float32)
        return out_ids, np.concatenate(starts), np.concatenate(vecs)

    def _read_part_windows(
        self, part: str, pool: str, col: int, wanted: set[str]
    ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        with open_part(self.path / "parts" / part) as f:
            if "windows" not in f:
                return None
            pids = f["ids"].asstr()[:]
            item = f["windows/item"][:]
            keep = np.array(
                [pids[r] in wanted and self.index[pids[r]].part == part for r in item],
                dtype=bool,
            )
            if not keep.any():
                return None
            return (
                [pids[r] for r in item[keep]],
                f["windows/start"][:][keep],
                f[f"windows/{pool}"][:, col, :][keep].astype(np.float32),
            )

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

    # ---------------------------------------------------------------- writing
    def writer(self, command: str = "") -> StoreWriter:
        """A writer holding the store's lock (raises :class:`StoreLockedError` when taken)."""
        return StoreWriter(self, command)
