"""Part files of a store: checksummed writing, damage detection, quarantine, leftovers.

Two checksums guard a part:

- every dataset is written with HDF5's ``fletcher32`` filter and the metadata (superblock,
  object headers, attributes) in the v110 format, which checksums it too: any flipped bit in
  what a reader reads makes HDF5 refuse the read instead of returning a different number;
- the CRC-32 of the whole file is in its name (``part-<time>-<host>-<pid>-<token>-<n>-c<crc>.h5``;
  parts of schema 1 were ``part-<time>-<pid>-<n>-c<crc>.h5``), so
  ``extract`` verifies every byte of the store at file-read speed (``verify_part``), faster
  than reading every chunk through the filter (docs/benchmarks.md has both).

A part that fails either check is *damaged*: it is moved to ``<store>/quarantine/`` (named in
one warning line), its items count as missing, and the next ``extract`` recomputes them.
Parts written before checksums existed are still read; flips in their data cannot be seen
until a compaction rewrites them with checksums.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import SslstackWarning

LIBVER = ("v110", "v110")  # metadata checksums, readable by HDF5 1.10 and later
QUARANTINE = "quarantine"
WRITERS = "writers"  # one lease file per live part writer
PART_SCHEMA = 2  # 1: rows keyed by id, "durations"; 2: rows keyed by content hash, "extents"


class DamagedPart(Exception):
    """A part file that cannot be opened or read back as written."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


_OS_LEVEL = re.compile(r"errno = [1-9]")


def _reason(e: BaseException) -> str:
    text = str(e).lower()
    if "checksum" in text or "fletcher" in text or "filter returned failure" in text:
        return "checksum mismatch: flipped bits"
    if "truncated" in text or "eof" in text:
        return "truncated file"
    if "signature" in text:
        return "damaged header"
    return (str(e).split("(")[0].strip() or type(e).__name__)[:120]


@contextlib.contextmanager
def open_part(path: Path) -> Iterator[h5py.File]:
    """Open a part for reading; any damage (HDF5 error, bad JSON attribute) is DamagedPart.

    A missing file stays a FileNotFoundError: a concurrent compaction removed it, and the
    caller relists the parts.
    """
    try:
        f = h5py.File(path, "r")
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if _OS_LEVEL.search(str(e)):  # too many open files, I/O error, …: not the file's fault
            raise
        if not path.exists():  # removed while HDF5 opened it ("can't retrieve stat info")
            raise FileNotFoundError(errno.ENOENT, "part removed while opening", str(path)) from e
        raise DamagedPart(path.name, _reason(e)) from e
    try:
        yield f
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, UnicodeDecodeError) as e:
        raise DamagedPart(path.name, _reason(e)) from e
    finally:
        f.close()


def attr_json(f: h5py.File, name: str, default: Any) -> Any:
    """A JSON attribute (str or bytes), or ``default`` when absent."""
    if name not in f.attrs:
        return default
    value = f.attrs[name]
    try:
        return json.loads(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"attribute {name} is not JSON") from e


def set_attr_json(f: h5py.File, name: str, value: Any) -> None:
    """Store ``value`` as fixed-length bytes: kept inside the checksummed object header."""
    f.attrs[name] = np.bytes_(json.dumps(value, sort_keys=True).encode("utf-8"))


def string_dataset(f: h5py.File, name: str, values: Sequence[str]) -> None:
    """Fixed-length utf-8 strings (variable-length ones live in an unchecksummed heap)."""
    enc = [v.encode("utf-8") for v in values]
    dt = h5py.string_dtype("utf-8", max([len(e) for e in enc] + [1]))
    data = np.array(enc, dtype=dt)
    f.create_dataset(
        name, data=data, chunks=(max(1, min(len(enc), 65536)),), maxshape=(None,), fletcher32=True
    )


_CRC = re.compile(r"-c([0-9a-f]{8})\.h5$")
_TMP = re.compile(r"^\.part-\d+-[A-Za-z0-9]+-\d+-([0-9a-f]{16})-\d+\.tmp$")


def host_slug(host: str) -> str:
    """The host name as it appears in part names (letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]+", "", host)[:32] or "host"


def part_base(time_ns: int, host: str, pid: int, token: str, seq: int) -> str:
    """A part's name before its checksum: unique across hosts, processes and writers, and
    sorted by time first (where one content has two parts, the newest is read)."""
    return f"part-{time_ns:020d}-{host_slug(host)}-{pid}-{token}-{seq:06d}"


def temp_owner(name: str) -> str | None:
    """The writer token of a temporary part's file name; ``""`` for a temporary of an older
    writer (no token: it held the store lock while writing), None for no temporary file."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    m = _TMP.match(name)
    return m.group(1) if m else ""


def part_name(base: str, crc: int) -> str:
    """The file name of a part whose bytes have CRC-32 ``crc``."""
    return f"{base}-c{crc & 0xFFFFFFFF:08x}.h5"


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def verify_part(path: Path) -> None:
    """Check every byte of a part: against the CRC-32 in its name, or (older parts without
    one) by reading every chunk through HDF5, which checks each chunk's fletcher32.

    Raises:
        DamagedPart: the bytes differ from those written, or the part cannot be read.
    """
    m = _CRC.search(path.name)
    if m is not None:
        if file_crc32(path) == int(m.group(1), 16):
            return
        with open_part(path) as f:  # a better reason when HDF5 sees it (truncated, header)
            _read_all(f)
        raise DamagedPart(path.name, "checksum mismatch: flipped bits")
    with open_part(path) as f:
        _read_all(f)


def _read_all(f: h5py.File) -> None:
    """Read every attribute and every chunk (HDF5 verifies the checksums on the way)."""
    for key in ("key", "layer_names", "supersedes"):
        attr_json(f, key, None)
    names: list[str] = []
    f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    for n in names:
        ds = f[n]
        if ds.chunks is None:
            ds[()]
            continue
        for sl in ds.iter_chunks():
            ds[sl]


def quarantine(store_path: Path, name: str, reason: str) -> Path | None:
    """Move a damaged part to ``<store>/quarantine/`` and warn in one line (the name, the
    reason, what happens next). Returns the new path (None when it could not be moved, for
    instance on a read-only workspace: the part is then skipped in memory only)."""
    src = store_path / "parts" / name
    dst_dir = store_path / QUARANTINE
    dst = dst_dir / f"{name}.{time.strftime('%Y%m%d-%H%M%S')}"
    moved: Path | None = dst
    try:
        dst_dir.mkdir(exist_ok=True)
        os.replace(src, dst)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError:
        moved = None
    where = f"moved to {dst}" if moved else "left in place (cannot move it: skipped)"
    warnings.warn(
        f"store {store_path.name}: part {name} is damaged ({reason}); {where}; its items count "
        "as missing and the next 'sslstack extract' recomputes them",
        SslstackWarning,
        stacklevel=3,
    )
    return moved


def disk_full(e: BaseException) -> bool:
    """Is ``e`` (or what caused it) 'no space left' / 'quota exceeded' / 'file too large'?"""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        text = str(e).lower()
        if "no space left" in text or "file too large" in text or "errno = 28" in text:
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def leftovers(store_path: Path, live: Sequence[str], all_parts: Sequence[str]) -> dict[str, Any]:
    """Files that hold no live data: temporary parts of killed writers, superseded parts of a
    killed compaction, quarantined parts. Sizes in bytes."""
    parts = store_path / "parts"
    live_set = set(live)

    def size(p: Path) -> int:
        try:
            return p.stat().st_size
        except FileNotFoundError:
            return 0

    tmp = [size(p) for p in parts.glob(".*.tmp")] if parts.exists() else []
    sup = [size(parts / n) for n in all_parts if n not in live_set]
    q = store_path / QUARANTINE
    bad = [size(p) for p in q.iterdir()] if q.exists() else []
    return {
        "temporary": len(tmp),
        "superseded": len(sup),
        "quarantined": len(bad),
        "wasted_bytes": sum(tmp) + sum(sup) + sum(bad),
        "removable_bytes": sum(tmp) + sum(sup),
    }
