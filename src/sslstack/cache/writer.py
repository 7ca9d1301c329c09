"""Writing parts: a lock-free part writer any number of processes and hosts can run at once.

A :class:`PartWriter` writes each batch as one atomic, checksummed part (see
:mod:`sslstack.cache.parts`) under a name unique across hosts, processes and writers
(``part-<time>-<host>-<pid>-<token>-<n>``), and never touches a file it did not create: it
needs no lock. Its lease (:mod:`sslstack.cache.leases`) tells a committer which temporary
files are in flight. A part is built in memory (HDF5's core driver) and written with one plain
``write``, so a full disk is an ordinary OSError (``DiskFullError``) and HDF5 never holds a
half-flushed file; parts larger than CORE_MAX_BYTES (merges) are written by HDF5 after a
free-space check. Committing (healing, compacting, cleaning up) is :mod:`.committer`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DiskFullError
from .item import ItemResult, check_item
from .key import StoreKey
from .leases import Lease
from .parts import (
    LIBVER,
    PART_SCHEMA,
    disk_full,
    file_crc32,
    part_base,
    part_name,
    set_attr_json,
    string_dataset,
)

CORE_MAX_BYTES = 256 << 20  # parts up to this size are built in memory, then written at once


class PartWriter:
    """Writes batches of one store as atomic parts; needs no lock (``with`` holds a lease).

    Args:
        path: the store folder.
        key: the store's key (written into every part).
        command: what is writing, for people reading the lease.
    """

    def __init__(self, path: Path, key: StoreKey, command: str = "") -> None:
        self.path = Path(path)
        self.key = key
        self.command = command or " ".join(sys.argv[:3])
        self.lease = Lease(self.path, self.command)
        self._seq = 0
        self._open = False
        self.written: list[str] = []

    def __enter__(self) -> PartWriter:
        self.lease.__enter__()
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lease (idempotent)."""
        if self._open:
            self._open = False
            self.lease.__exit__(None, None, None)

    def _new_base(self) -> str:
        self._seq += 1
        return part_base(
            time.time_ns(), socket.gethostname(), os.getpid(), self.lease.token, self._seq
        )

    def write(
        self,
        items: Sequence[ItemResult],
        layer_names: Sequence[str],
        failures: Sequence[tuple[str, str, str]] = (),
    ) -> str | None:
        """Write one batch (results and ``(name, hash, error)`` failures) as one atomic part;
        its file name (None when there was nothing to write)."""
        if not items and not failures:
            return None
        if not self._open:
            raise RuntimeError("PartWriter.write outside 'with PartWriter(...)'")
        dtype = np.float16 if self.key.storage == "float16" else np.float32
        for item in items:  # the last guard: no NaN or infinity ever enters a store
            check_item(item, dtype)
        return self.atomic_part(
            lambda f: write_part(f, self.key, items, list(layer_names), failures, dtype)
        )

    def atomic_part(self, fill: Callable[[h5py.File], None], estimate: int = 0) -> str:
        """Create a part: written under a temporary name, fsynced, then renamed into place.

        Parts up to CORE_MAX_BYTES are built in memory and written with one plain ``write``:
        a full disk is then an ordinary OSError, and HDF5 never holds a half-flushed file
        (whose deallocation crashed the interpreter). Larger parts (compactions) are written
        by HDF5 directly after a check that the free space holds twice the estimate.

        Raises:
            DiskFullError: no space (or quota) left; the temporary file is removed.
        """
        base = self._new_base()
        tmp = self.path / "parts" / f".{base}.tmp"
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
            os.replace(tmp, self.path / "parts" / name)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, Exception) and disk_full(e):
                raise DiskFullError(
                    f"{self.path}: no space left on the device while writing a part; "
                    "what was written before is kept: free some space and rerun"
                ) from None
            raise
        self.written.append(name)
        return name


def write_part(
    f: h5py.File,
    key: StoreKey,
    items: Sequence[ItemResult],
    layer_names: list[str],
    failures: Sequence[tuple[str, str, str]],
    dtype: Any,
) -> None:
    """Fill an open, empty part with ``items`` (and failures)."""
    f.attrs["schema"] = PART_SCHEMA
    set_attr_json(f, "key", key.to_dict())
    set_attr_json(f, "layer_names", layer_names)
    set_attr_json(f, "supersedes", [])
    string_dataset(f, "ids", [it.id for it in items])
    string_dataset(f, "hashes", [it.hash for it in items])
    dataset(f, "extents", np.array([it.extent for it in items], np.float32))
    if items:
        for pool in items[0].clip:
            arr = np.stack([it.clip[pool] for it in items]).astype(dtype)
            dataset(f, f"clip/{pool}", arr, chunks_of(arr.shape))
        if any(it.window_starts for it in items):
            rows = np.concatenate(
                [np.full(len(it.window_starts), r, np.int64) for r, it in enumerate(items)]
            )
            dataset(f, "windows/item", rows)
            starts = [np.asarray(it.window_starts, np.float64) for it in items]
            dataset(f, "windows/start", np.concatenate(starts))
            for pool in items[0].windows:
                arr = np.concatenate([it.windows[pool] for it in items]).astype(dtype)
                dataset(f, f"windows/{pool}", arr, chunks_of(arr.shape))
    write_failures(f, failures)


def chunks_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    rows = max(1, min(shape[0], max(1, (1 << 20) // max(1, shape[2] * 2))))
    return (rows, 1, shape[2])


def dataset(
    f: h5py.File, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None
) -> None:
    """A checksummed (fletcher32) dataset; empty ones are made resizable so they can chunk."""
    if chunks is None:
        chunks = (max(1, min(len(data), 65536)), *data.shape[1:])
    maxshape = (None, *data.shape[1:])
    f.create_dataset(name, data=data, chunks=chunks, maxshape=maxshape, fletcher32=True)


def write_failures(f: h5py.File, failures: Sequence[tuple[str, str, str]]) -> None:
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
