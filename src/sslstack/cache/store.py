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

import contextlib
import errno
import fcntl
import functools
import os
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DiskFullError, SslstackWarning, StoreError, StoreLockedError
from ..workspace import atomic_write_json, read_json
from .key import SCHEMA_VERSION, StoreKey
from .parts import (
    LIBVER,
    DamagedPart,
    attr_json,
    disk_full,
    file_crc32,
    leftovers,
    open_part,
    part_name,
    quarantine,
    set_attr_json,
    string_dataset,
    verify_part,
)

COMPACT_MAX_BYTES = 512 << 20
CORE_MAX_BYTES = 256 << 20  # parts up to this size are built in memory, then written at once


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


class Store:
    """An embedding store folder. Opening reads only ``key.json``; data is read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "key.json"
        if not meta_path.exists():
            raise StoreError(f"{self.path}: not an sslstack store (no key.json)")
        meta = read_json(meta_path)
        self.key = StoreKey.from_dict(meta["key"])
        self.provenance: dict[str, Any] = meta.get("provenance", {})
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
        clean and compact (skipped quietly when another writer holds the lock)."""
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
        return {"quarantined": bad, **left}

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
            pools += [f"{p}_wmax" for p in self.key.pools]
        return pools

    def read(
        self, layer: int | str, pool: str = "mean", ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """One layer and pooling of the chosen items (all when ``ids`` is None) as float32.

        Raises:
            StoreError: unknown layer or pooling, or ids the store does not hold (named).
        """
        self._check_pool(pool)
        col = self.layer_index(layer)
        want = self.ids() if ids is None else list(ids)
        missing = [i for i in want if i not in self.index]
        if missing:
            raise StoreError(
                f"{self.path.name}: {len(missing)} of {len(want)} item(s) have no embeddings "
                f"(first: {', '.join(missing[:5])}); run 'sslstack extract' on them first"
            )
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
        if self.key.window is None:
            raise StoreError(f"{self.path.name}: not a windowed store (extract with --window)")
        self._check_pool(pool, windows=True)
        col = self.layer_index(layer)
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


class StoreWriter:
    """Writes batches as atomic parts under an exclusive lock; compacts on close."""

    def __init__(self, store: Store, command: str = "") -> None:
        self.store = store
        self.command = command or " ".join(sys.argv[:3])
        self._fh: Any = None
        self._seq = 0
        self.layer_names: list[str] | None = None

    def __enter__(self) -> StoreWriter:
        lock_path = self.store.path / "store.lock"
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            fh.close()
            raise StoreLockedError(
                f"{self.store.path.name} is being written by {who}; wait for it to finish "
                "(two extractions of one store would compute the same items twice)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()} ({self.command}) since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        fh.flush()
        self._fh = fh
        for tmp in (self.store.path / "parts").glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # left by a killed writer: never renamed, never read
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.compact()
        finally:
            if self._fh is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
                self._fh.close()
                self._fh = None
            self.store.refresh()

    def _new_part_name(self) -> str:
        self._seq += 1
        return f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"

    def write(
        self,
        items: Sequence[ItemResult],
        layer_names: Sequence[str],
        failures: Sequence[tuple[str, str, str]] = (),
    ) -> str | None:
        """Write one batch (results and ``(id, hash, error)`` failures) as one atomic part."""
        if not items and not failures:
            return None
        dtype = np.float16 if self.store.key.storage == "float16" else np.float32
        name = self._atomic_part(
            lambda f: self._write_part(f, items, list(layer_names), failures, dtype)
        )
        return name

    def _atomic_part(self, fill: Callable[[h5py.File], None], estimate: int = 0) -> str:
        """Create a part: written under a temporary name, fsynced, then renamed into place.

        Parts up to CORE_MAX_BYTES are built in memory and written with one plain ``write``:
        a full disk is then an ordinary OSError, and HDF5 never holds a half-flushed file
        (whose deallocation crashed the interpreter). Larger parts (compactions) are written
        by HDF5 directly after a check that the free space holds twice the estimate.

        Raises:
            DiskFullError: no space (or quota) left; the temporary file is removed.
        """
        base = self._new_part_name()
        tmp = self.store.path / "parts" / f".{base}.tmp"
        try:
            if estimate <= CORE_MAX_BYTES:
                data = _in_memory_part(tmp, fill)
                crc = zlib.crc32(data)
                _write_bytes(tmp, data)
            else:
                _check_free(tmp.parent, 2 * estimate)
                _write_with_hdf5(tmp, fill)
                crc = file_crc32(tmp)
            name = part_name(base, crc)
            os.replace(tmp, self.store.path / "parts" / name)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, Exception) and disk_full(e):
                raise DiskFullError(
                    f"{self.store.path}: no space left on the device while writing a part; "
                    "what was written before is kept: free some space and rerun"
                ) from None
            raise
        return name

    def _write_part(
        self,
        f: h5py.File,
        items: Sequence[ItemResult],
        layer_names: list[str],
        failures: Sequence[tuple[str, str, str]],
        dtype: Any,
        supersedes: Sequence[str] = (),
    ) -> None:
        f.attrs["schema"] = SCHEMA_VERSION
        set_attr_json(f, "key", self.store.key.to_dict())
        set_attr_json(f, "layer_names", layer_names)
        set_attr_json(f, "supersedes", list(supersedes))
        string_dataset(f, "ids", [it.id for it in items])
        string_dataset(f, "hashes", [it.hash for it in items])
        _dataset(f, "durations", np.array([it.duration for it in items], np.float32))
        if items:
            for pool in items[0].clip:
                arr = np.stack([it.clip[pool] for it in items]).astype(dtype)
                _dataset(f, f"clip/{pool}", arr, _chunks(arr.shape))
            if any(it.window_starts for it in items):
                rows = np.concatenate(
                    [np.full(len(it.window_starts), r, np.int64) for r, it in enumerate(items)]
                )
                _dataset(f, "windows/item", rows)
                _dataset(
                    f,
                    "windows/start",
                    np.concatenate([np.asarray(it.window_starts, np.float64) for it in items]),
                )
                for pool in items[0].windows:
                    arr = np.concatenate([it.windows[pool] for it in items]).astype(dtype)
                    _dataset(f, f"windows/{pool}", arr, _chunks(arr.shape))
        _write_failures(f, failures)

    def compact(self) -> None:
        """Merge the live parts smaller than COMPACT_MAX_BYTES into one part, streaming.

        A part found damaged while merging is quarantined and the merge retried without it;
        a full disk leaves the parts as they are (one warning line): they stay readable.
        """
        st = self.store
        for _ in range(3):
            st.refresh()
            small = [p for p in st._parts_seen if st._size(p) < COMPACT_MAX_BYTES]
            if len(small) < 2:
                break
            estimate = sum(st._size(p) for p in small)
            try:
                self._atomic_part(functools.partial(_merge_parts, st, small, key=st.key), estimate)
                break
            except DamagedPart as e:
                st._set_aside(e)
            except DiskFullError:
                warnings.warn(
                    f"store {st.path.name}: not enough free space to compact {len(small)} parts "
                    f"({estimate / 2**20:.1f} MiB); they stay as they are (readable), and the "
                    "next 'sslstack extract' with space compacts them",
                    SslstackWarning,
                    stacklevel=2,
                )
                break
        self._delete_superseded()

    def _delete_superseded(self) -> None:
        st = self.store
        live = set(st._live_parts())
        for name in st._part_names():
            if name not in live:
                (st.path / "parts" / name).unlink(missing_ok=True)
        st.refresh()


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    rows = max(1, min(shape[0], max(1, (1 << 20) // max(1, shape[2] * 2))))
    return (rows, 1, shape[2])


def _dataset(
    f: h5py.File, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None
) -> None:
    """A checksummed (fletcher32) dataset; empty ones are made resizable so they can chunk."""
    if chunks is None:
        chunks = (max(1, min(len(data), 65536)), *data.shape[1:])
    maxshape = (None, *data.shape[1:])
    f.create_dataset(name, data=data, chunks=chunks, maxshape=maxshape, fletcher32=True)


def _write_failures(f: h5py.File, failures: Sequence[tuple[str, str, str]]) -> None:
    if failures:
        string_dataset(f, "failed/ids", [x[0] for x in failures])
        string_dataset(f, "failed/hashes", [x[1] for x in failures])
        string_dataset(f, "failed/errors", [x[2] for x in failures])


def _in_memory_part(tmp: Path, fill: Callable[[h5py.File], None]) -> bytes:
    """The bytes of a part built by ``fill`` in memory (HDF5's core driver, no disk I/O)."""
    f = h5py.File(tmp, "w", driver="core", backing_store=False, libver=LIBVER)
    try:
        fill(f)
        f.flush()
        return bytes(f.id.get_file_image())
    finally:
        f.close()


def _write_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_free(folder: Path, need: int) -> None:
    st = os.statvfs(folder)
    if st.f_bavail * st.f_frsize < need:
        raise OSError(errno.ENOSPC, "not enough free space for the part", str(folder))


def _write_with_hdf5(tmp: Path, fill: Callable[[h5py.File], None]) -> None:
    """Write a large part through HDF5, closing the file deterministically on every path."""
    f = h5py.File(tmp, "w", libver=LIBVER)
    try:
        fill(f)
    finally:
        with contextlib.suppress(Exception):  # the write error above is the one to report
            f.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())


def _merge_parts(store: Store, parts: Sequence[str], f: h5py.File, key: StoreKey) -> None:
    """Copy the live rows of ``parts`` into the open file ``f``, one part at a time."""
    part_set = set(parts)
    plan: dict[str, list[tuple[str, int]]] = {p: [] for p in parts}
    for item, loc in store.index.items():
        if loc.part in part_set:
            plan[loc.part].append((item, loc.row))
    failures = list(store.failures.items())
    n = sum(len(v) for v in plan.values())
    f.attrs["schema"] = SCHEMA_VERSION
    set_attr_json(f, "key", key.to_dict())
    set_attr_json(f, "layer_names", store.layer_names)
    set_attr_json(f, "supersedes", list(parts))
    ids, hashes, durs = [], [], []
    win_rows, win_starts = [], []
    created = False
    pos = wpos = 0
    for part in parts:
        rows = sorted(plan[part], key=lambda t: t[1])
        if not rows:
            continue
        src_rows = np.array([r for _, r in rows])
        with open_part(store.path / "parts" / part) as g:
            if not created:
                for pool in g["clip"]:
                    ds = g[f"clip/{pool}"]
                    shape = (n, ds.shape[1], ds.shape[2])
                    f.create_dataset(
                        f"clip/{pool}",
                        shape=shape,
                        dtype=ds.dtype,
                        chunks=_chunks(shape),
                        fletcher32=True,
                    )
                created = True
            ids += [i for i, _ in rows]
            hashes += list(g["hashes"].asstr()[:][src_rows])
            durs += list(g["durations"][:][src_rows])
            for pool in g["clip"]:
                f[f"clip/{pool}"][pos : pos + len(rows)] = g[f"clip/{pool}"][src_rows]
            if "windows" in g:
                item = g["windows/item"][:]
                remap = {r: pos + k for k, r in enumerate(src_rows)}
                sel = np.flatnonzero(np.isin(item, src_rows))
                win_rows += [remap[r] for r in item[sel]]
                win_starts += list(g["windows/start"][:][sel])
                for pool in g["windows"]:
                    if pool in ("item", "start"):
                        continue
                    src = g[f"windows/{pool}"]
                    if f"windows/{pool}" not in f:
                        f.create_dataset(
                            f"windows/{pool}",
                            shape=(0, src.shape[1], src.shape[2]),
                            maxshape=(None, src.shape[1], src.shape[2]),
                            dtype=src.dtype,
                            chunks=_chunks((4096, src.shape[1], src.shape[2])),
                            fletcher32=True,
                        )
                    dst = f[f"windows/{pool}"]
                    dst.resize(wpos + len(sel), axis=0)
                    dst[wpos : wpos + len(sel)] = src[sel] if len(sel) else src[:0]
                wpos += len(sel)
        pos += len(rows)
    string_dataset(f, "ids", ids)
    string_dataset(f, "hashes", [str(h) for h in hashes])
    _dataset(f, "durations", np.asarray(durs, np.float32))
    if win_rows:
        _dataset(f, "windows/item", np.asarray(win_rows, np.int64))
        _dataset(f, "windows/start", np.asarray(win_starts, np.float64))
    _write_failures(f, [(i, h, e) for i, (h, e) in failures])
