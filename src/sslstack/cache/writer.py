"""Writing a store: atomic checksummed parts under an exclusive lock, and compaction.

See :mod:`sslstack.cache.store` for the layout and :mod:`sslstack.cache.parts` for the
checksums. A part is built in memory (HDF5's core driver) and written with one plain ``write``,
so a full disk is an ordinary OSError (``DiskFullError``) and HDF5 never holds a half-flushed
file; merges larger than CORE_MAX_BYTES are written by HDF5 after a free-space check.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..audio_checks import check_item
from ..errors import DiskFullError, SslstackWarning, StoreLockedError
from .key import SCHEMA_VERSION, StoreKey
from .parts import (
    LIBVER,
    DamagedPart,
    disk_full,
    file_crc32,
    open_part,
    part_name,
    set_attr_json,
    string_dataset,
)

if TYPE_CHECKING:
    from .store import ItemResult, Store

COMPACT_MAX_BYTES = 512 << 20
CORE_MAX_BYTES = 256 << 20  # parts up to this size are built in memory, then written at once


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
        for item in items:  # the last guard: no NaN or infinity ever enters a store
            check_item(item, dtype)
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
