"""Committing a store: the one step that takes the store's lock, briefly.

Part writers (:mod:`.writer`) need no lock; a commit takes ``store.lock`` (``fcntl``) only to

1. **clean up**: remove the temporary files of writers that are gone (same host: pid dead;
   other hosts: an expired lease; :mod:`.leases`) and their lease files, never a live
   writer's; delete superseded parts a killed compaction left;
2. **compact**: merge the live parts smaller than COMPACT_MAX_BYTES into one part that lists
   them in ``supersedes`` (one row per content hash), then delete them.

A part found damaged while merging is quarantined and the merge retried without it; a full
disk leaves the parts as they are (one warning line): they stay readable. :class:`StoreWriter`
is a part writer that commits when it closes: what ``extract`` uses on one machine. A
distributed executor writes parts in its workers (:class:`~.writer.PartWriter`) and commits
once on the driver (:func:`commit`).
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..errors import DiskFullError, SslstackWarning, StoreLockedError
from .item import ItemResult
from .leases import gone_temporaries, remove_gone_leases
from .parts import (
    PART_SCHEMA,
    DamagedPart,
    attr_json,
    open_part,
    set_attr_json,
    string_dataset,
)
from .reader import StoreReader, extents
from .writer import PartWriter, chunks_of, dataset, write_failures

COMPACT_MAX_BYTES = 512 << 20
LOCK_WAIT_S = 600.0  # a commit waits this long for another commit (compactions are brief)


@contextmanager
def store_lock(path: Path, command: str, wait: float) -> Iterator[None]:
    """Hold ``<store>/store.lock``, waiting up to ``wait`` seconds for another holder.

    Raises:
        StoreLockedError: still held after ``wait`` seconds (the holder is named).
    """
    fh = open(path / "store.lock", "a+")  # noqa: SIM115 - held for the block
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    who = fh.read().strip() or "another process"
                    raise StoreLockedError(
                        f"{path.name} is being committed by {who}; it cleans up when it "
                        "finishes (or rerun when it is done)"
                    ) from None
                time.sleep(0.05)
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()} ({command}) since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


def commit(
    store: StoreReader, command: str = "commit", *, wait: float = LOCK_WAIT_S, compact: bool = True
) -> dict[str, int]:
    """Clean up and compact ``store`` under its lock (see the module).

    Returns:
        ``{"temporary": removed temporary files, "leases": removed leases of gone writers,
        "superseded": removed superseded parts, "merged": parts merged into one}``.

    Raises:
        StoreLockedError: another commit held the lock for ``wait`` seconds.
    """
    with store_lock(store.path, command, wait):
        done = {"temporary": remove_gone_temporaries(store.path)}
        done["leases"] = remove_gone_leases(store.path)
        done["merged"] = compact_parts(store, command) if compact else 0
        # what this merge superseded, and what a killed compaction's merge did
        done["superseded"] = delete_superseded(store)
    store.refresh()
    return done


def remove_gone_temporaries(path: Path) -> int:
    """Remove temporary parts whose writers are gone; how many. Call under the lock."""
    gone = gone_temporaries(path)
    for tmp in gone:
        tmp.unlink(missing_ok=True)
    return len(gone)


def delete_superseded(store: StoreReader) -> int:
    """Delete the parts that another part names as superseded (a merge's inputs); how many.
    Call under the lock.

    Only parts some part *names* are deleted, never "every part that is not live": a part
    writer needs no lock, so a part it renames into place while this runs is in a later listing
    but not in an earlier one, and must stay (deleting it lost that batch's items).
    """
    folder = store.path / "parts"
    names = store._part_names()
    superseded: set[str] = set()
    for name in names:
        try:
            with open_part(folder / name) as f:
                superseded.update(attr_json(f, "supersedes", []))
        except (DamagedPart, FileNotFoundError):
            continue  # a damaged part is set aside by the reader; a gone one needs nothing
    n = 0
    for name in names:
        if name in superseded and (folder / name).exists():
            (folder / name).unlink(missing_ok=True)
            n += 1
    store.refresh()
    return n


def compact_parts(store: StoreReader, command: str = "compact") -> int:
    """Merge the live parts smaller than COMPACT_MAX_BYTES into one; how many were merged.
    Call under the lock."""
    for _ in range(3):
        store.refresh()
        small = [p for p in store._parts_seen if store._size(p) < COMPACT_MAX_BYTES]
        if len(small) < 2:
            return 0
        estimate = sum(store._size(p) for p in small)
        try:
            with PartWriter(store.path, store.key, command) as w:
                w.atomic_part(functools.partial(_merge_parts, store, small), estimate)
            return len(small)
        except DamagedPart as e:
            store._set_aside(e)
        except DiskFullError:
            warnings.warn(
                f"store {store.path.name}: not enough free space to compact {len(small)} parts "
                f"({estimate / 2**20:.1f} MiB); they stay as they are (readable), and the "
                "next 'sslstack extract' with space compacts them",
                SslstackWarning,
                stacklevel=2,
            )
            return 0
    return 0


def _merge_parts(store: StoreReader, parts: Sequence[str], f: h5py.File) -> None:
    """Copy the live rows of ``parts`` (one per content hash) into the open file ``f``."""
    part_set = set(parts)
    plan: dict[str, list[int]] = {p: [] for p in parts}
    for loc in store.index.values():
        if loc.part in part_set:
            plan[loc.part].append(loc.row)
    f.attrs["schema"] = PART_SCHEMA
    set_attr_json(f, "key", store.key.to_dict())
    set_attr_json(f, "layer_names", store.layer_names)
    set_attr_json(f, "supersedes", list(parts))
    out = _Merged(f, sum(len(v) for v in plan.values()))
    for part in parts:
        rows = np.array(sorted(plan[part]), dtype=np.int64)
        if len(rows):
            with open_part(store.path / "parts" / part) as g:
                out.add(g, rows)
    out.finish([(name, h, err) for h, (name, err) in store.failures.items()])


class _Merged:
    """A merged part being filled, one source part at a time."""

    def __init__(self, f: h5py.File, n: int) -> None:
        self.f, self.n = f, n
        self.names: list[str] = []
        self.hashes: list[str] = []
        self.extents: list[float] = []
        self.win_rows: list[int] = []
        self.win_starts: list[float] = []
        self.pos = self.wpos = 0

    def add(self, g: h5py.File, rows: np.ndarray) -> None:
        f, pos = self.f, self.pos
        for pool in g["clip"]:
            src = g[f"clip/{pool}"]
            if f"clip/{pool}" not in f:
                shape = (self.n, src.shape[1], src.shape[2])
                f.create_dataset(
                    f"clip/{pool}", shape=shape, dtype=src.dtype, chunks=chunks_of(shape),
                    fletcher32=True,
                )  # fmt: skip
            f[f"clip/{pool}"][pos : pos + len(rows)] = src[rows]
        self.names += list(g["ids"].asstr()[:][rows])
        self.hashes += list(g["hashes"].asstr()[:][rows])
        self.extents += list(extents(g)[rows])
        if "windows" in g:
            self._add_windows(g, rows)
        self.pos += len(rows)

    def _add_windows(self, g: h5py.File, rows: np.ndarray) -> None:
        item = g["windows/item"][:]
        remap = {int(r): self.pos + k for k, r in enumerate(rows)}
        sel = np.flatnonzero(np.isin(item, rows))
        self.win_rows += [remap[int(r)] for r in item[sel]]
        self.win_starts += list(g["windows/start"][:][sel])
        for pool in g["windows"]:
            if pool in ("item", "start"):
                continue
            src = g[f"windows/{pool}"]
            if f"windows/{pool}" not in self.f:
                self.f.create_dataset(
                    f"windows/{pool}",
                    shape=(0, src.shape[1], src.shape[2]),
                    maxshape=(None, src.shape[1], src.shape[2]),
                    dtype=src.dtype,
                    chunks=chunks_of((4096, src.shape[1], src.shape[2])),
                    fletcher32=True,
                )
            dst = self.f[f"windows/{pool}"]
            dst.resize(self.wpos + len(sel), axis=0)
            dst[self.wpos : self.wpos + len(sel)] = src[sel] if len(sel) else src[:0]
        self.wpos += len(sel)

    def finish(self, failures: Sequence[tuple[str, str, str]]) -> None:
        f = self.f
        string_dataset(f, "ids", self.names)
        string_dataset(f, "hashes", [str(h) for h in self.hashes])
        dataset(f, "extents", np.asarray(self.extents, np.float32))
        if self.win_rows:
            dataset(f, "windows/item", np.asarray(self.win_rows, np.int64))
            dataset(f, "windows/start", np.asarray(self.win_starts, np.float64))
        write_failures(f, failures)


class StoreWriter:
    """A part writer that commits when it closes (``with store.writer() as w: w.write(...)``).

    Writing needs no lock, so any number of StoreWriters (processes, hosts) may write one
    store at once; each commit takes the lock briefly. A writer left by an exception does not
    compact (its parts stay readable; the next commit compacts them).
    """

    def __init__(self, store: StoreReader, command: str = "") -> None:
        self.store = store
        self.parts = PartWriter(store.path, store.key, command)
        self.command = self.parts.command

    def __enter__(self) -> StoreWriter:
        self.parts.__enter__()
        return self

    def write(
        self,
        items: Sequence[ItemResult],
        layer_names: Sequence[str],
        failures: Sequence[tuple[str, str, str]] = (),
    ) -> str | None:
        """Write one batch as one atomic part (see :meth:`PartWriter.write`)."""
        return self.parts.write(items, layer_names, failures)

    def __exit__(self, *exc: object) -> None:
        self.parts.close()
        ok = exc[0] is None
        try:  # after an error, clean up only if no other commit is running
            commit(self.store, self.command, wait=LOCK_WAIT_S if ok else 0.0, compact=ok)
        except StoreLockedError:
            pass  # the holder cleans up and compacts when it finishes
        except OSError as e:  # a read-only workspace: the parts stay as they are (readable)
            warnings.warn(
                f"store {self.store.path.name}: cannot commit ({e.strerror}); the parts stay "
                "as written (readable)",
                SslstackWarning,
                stacklevel=2,
            )
        finally:
            self.store.refresh()
