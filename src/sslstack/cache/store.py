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
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import StoreError, StoreLockedError
from ..workspace import atomic_write_json, read_json
from .key import SCHEMA_VERSION, StoreKey

_STR = h5py.string_dtype("utf-8")
COMPACT_MAX_BYTES = 512 << 20


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
        for name in names:
            with h5py.File(self.path / "parts" / name, "r") as f:
                superseded.update(json.loads(f.attrs.get("supersedes", "[]")))
        return [n for n in names if n not in superseded]

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
        for name in live:  # oldest first: a later part overrides an earlier one
            with h5py.File(self.path / "parts" / name, "r") as f:
                if layer_names is None and "layer_names" in f.attrs:
                    layer_names = json.loads(f.attrs["layer_names"])
                for row, item in enumerate(f["ids"].asstr()[:]):
                    index[item] = _Loc(name, row)
                    failed.pop(item, None)
                if "failed" in f:
                    fids = f["failed/ids"].asstr()[:]
                    fhs = f["failed/hashes"].asstr()[:]
                    errs = f["failed/errors"].asstr()[:]
                    for item, h, e in zip(fids, fhs, errs, strict=True):
                        if item in index and index[item].part == name:
                            continue
                        failed[item] = (h, e)
                        index.pop(item, None)  # a newer attempt failed: the old vector is stale
        self._index, self._failed, self._parts_seen = index, failed, tuple(live)
        self._layer_names = layer_names

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
            with h5py.File(self.path / "parts" / part, "r") as f:
                hs = f["hashes"].asstr()[:]
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
            with h5py.File(self.path / "parts" / part, "r") as f:
                ds = f[f"clip/{pool}"]
                block = ds[:, col, :] if len(src) > ds.shape[0] // 2 else None
                if block is not None:
                    rows = block[np.asarray(src)]
                else:
                    order = np.argsort(src)
                    srt = np.asarray(src)[order]
                    rows = np.empty((len(src), ds.shape[2]), dtype=ds.dtype)
                    rows[order] = ds[srt, col, :]
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
        by_part: dict[str, list[tuple[str, int]]] = {}
        for item in ids:
            loc = self.index[item]
            by_part.setdefault(loc.part, []).append((item, loc.row))
        out: dict[str, ItemResult] = {}
        for part, rows in by_part.items():
            with h5py.File(self.path / "parts" / part, "r") as f:
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
            with h5py.File(self.path / "parts" / part, "r") as f:
                if "windows" not in f:
                    continue
                pids = f["ids"].asstr()[:]
                item = f["windows/item"][:]
                keep = np.array(
                    [pids[r] in wanted and self.index[pids[r]].part == part for r in item],
                    dtype=bool,
                )
                if not keep.any():
                    continue
                out_ids += [pids[r] for r in item[keep]]
                starts.append(f["windows/start"][:][keep])
                vecs.append(f[f"windows/{pool}"][:, col, :][keep].astype(np.float32))
        if not vecs:
            return [], np.zeros(0), np.zeros((0, 0), dtype=np.float32)
        return out_ids, np.concatenate(starts), np.concatenate(vecs)

    def info(self) -> dict[str, Any]:
        """Summary for ``cache ls``: encoder, items, layers, dim, poolings, size on disk."""
        names = self.layer_names
        dim = 0
        if self._parts_seen:
            with h5py.File(self.path / "parts" / self._parts_seen[-1], "r") as f:
                ds = f[f"clip/{self.key.pools[0]}"]
                dim = int(ds.shape[2])
        size = sum(p.stat().st_size for p in (self.path / "parts").glob("*.h5"))
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
        return f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.h5"

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

    def _atomic_part(self, fill: Callable[[h5py.File], None]) -> str:
        """Create a part: written under a temporary name, fsynced, then renamed into place."""
        name = self._new_part_name()
        path = self.store.path / "parts" / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                fill(f)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
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
        f.attrs["key"] = json.dumps(self.store.key.to_dict(), sort_keys=True)
        f.attrs["layer_names"] = json.dumps(layer_names)
        f.attrs["supersedes"] = json.dumps(list(supersedes))
        f.create_dataset("ids", data=[it.id for it in items], dtype=_STR)
        f.create_dataset("hashes", data=[it.hash for it in items], dtype=_STR)
        f.create_dataset("durations", data=np.array([it.duration for it in items], np.float32))
        if items:
            for pool in items[0].clip:
                arr = np.stack([it.clip[pool] for it in items]).astype(dtype)
                f.create_dataset(f"clip/{pool}", data=arr, chunks=_chunks(arr.shape))
            if any(it.window_starts for it in items):
                rows = np.concatenate(
                    [np.full(len(it.window_starts), r, np.int64) for r, it in enumerate(items)]
                )
                f.create_dataset("windows/item", data=rows)
                f.create_dataset(
                    "windows/start",
                    data=np.concatenate([np.asarray(it.window_starts, np.float64) for it in items]),
                )
                for pool in items[0].windows:
                    arr = np.concatenate([it.windows[pool] for it in items]).astype(dtype)
                    f.create_dataset(f"windows/{pool}", data=arr, chunks=_chunks(arr.shape))
        if failures:
            f.create_dataset("failed/ids", data=[x[0] for x in failures], dtype=_STR)
            f.create_dataset("failed/hashes", data=[x[1] for x in failures], dtype=_STR)
            f.create_dataset("failed/errors", data=[x[2] for x in failures], dtype=_STR)

    def compact(self) -> None:
        """Merge the live parts smaller than COMPACT_MAX_BYTES into one part, streaming."""
        st = self.store
        st.refresh()
        parts_dir = st.path / "parts"
        small = [p for p in st._parts_seen if (parts_dir / p).stat().st_size < COMPACT_MAX_BYTES]
        if len(small) < 2:
            self._delete_superseded()
            return
        self._atomic_part(lambda f: _merge_parts(st, small, f, self.store.key))
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
    f.attrs["key"] = json.dumps(key.to_dict(), sort_keys=True)
    f.attrs["layer_names"] = json.dumps(store.layer_names)
    f.attrs["supersedes"] = json.dumps(list(parts))
    ids, hashes, durs = [], [], []
    win_rows, win_starts = [], []
    created = False
    pos = wpos = 0
    for part in parts:
        rows = sorted(plan[part], key=lambda t: t[1])
        if not rows:
            continue
        src_rows = np.array([r for _, r in rows])
        with h5py.File(store.path / "parts" / part, "r") as g:
            if not created:
                for pool in g["clip"]:
                    ds = g[f"clip/{pool}"]
                    shape = (n, ds.shape[1], ds.shape[2])
                    f.create_dataset(
                        f"clip/{pool}", shape=shape, dtype=ds.dtype, chunks=_chunks(shape)
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
                        )
                    dst = f[f"windows/{pool}"]
                    dst.resize(wpos + len(sel), axis=0)
                    dst[wpos : wpos + len(sel)] = src[sel] if len(sel) else src[:0]
                wpos += len(sel)
        pos += len(rows)
    f.create_dataset("ids", data=ids, dtype=_STR)
    f.create_dataset("hashes", data=hashes, dtype=_STR)
    f.create_dataset("durations", data=np.asarray(durs, np.float32))
    if win_rows:
        f.create_dataset("windows/item", data=np.asarray(win_rows, np.int64))
        f.create_dataset("windows/start", data=np.asarray(win_starts, np.float64))
    if failures:
        f.create_dataset("failed/ids", data=[i for i, _ in failures], dtype=_STR)
        f.create_dataset("failed/hashes", data=[h for _, (h, _) in failures], dtype=_STR)
        f.create_dataset("failed/errors", data=[e for _, (_, e) in failures], dtype=_STR)
