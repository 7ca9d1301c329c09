"""Content hashes of input files: what identifies an item in every store.

An item's content hash is the SHA-1 of its file's bytes. Hashing the bytes (not the decoded
samples) costs one read of the file, needs no decoder, and works for any item source (audio
today, images next): two files with equal bytes are one item, whatever their names.

Hashing every file on every run would cost a full read of the dataset, so hashes are memoized
per workspace in ``<workspace>/file-hashes.csv``, keyed by the file's absolute path and
revalidated by ``(size, mtime_ns, inode, ctime_ns)``. The inode catches a file replaced by
another (``mv``, an editor's save-as-rename); the change time catches a rewrite in place whose
size and modification time were preserved (``rsync -a``, ``cp -p``, ``touch -r``): the kernel
sets ``ctime`` on every write and every metadata change, and no user call can set it back.
A rerun over 3000 cached files costs 3000 ``stat`` calls (docs/benchmarks.md). A file changed
within :data:`RACY_NS` of being hashed is hashed again next time (file times tick coarsely).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .workspace import (
    Workspace,
    atomic_write_text,
    checked_text,
    read_checked_text,
    read_derived,
)

MEMO_NAME = "file-hashes.csv"
# File times tick coarsely (a jiffy, up to 10 ms): a file rewritten within the tick it was hashed
# in keeps its stamp. As git does for its index, a file changed less than this long before it
# was hashed is not memoized: it is hashed again next time, until it is older.
RACY_NS = 2_000_000_000
_HEADER = "path,size,mtime_ns,ino,ctime_ns,sha1"

_Stamp = tuple[int, int, int, int]


def file_sha1(path: str | os.PathLike[str]) -> str:
    """SHA-1 of the file's bytes (hex): an item's content hash."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _read_memo(path: Path) -> dict[str, tuple[_Stamp, str]]:
    """The memo as written (checksummed). A damaged one (a flipped byte could otherwise pass as
    another valid hash) is moved aside with one warning and rebuilt: it is derived data."""
    return read_derived(path, _parse_memo) or {}


def _parse_memo(path: Path) -> dict[str, tuple[_Stamp, str]]:
    lines = read_checked_text(path).splitlines()
    if not lines or lines[0] != _HEADER:
        raise ValueError("not a file-hash memo (unknown header)")
    memo: dict[str, tuple[_Stamp, str]] = {}
    for line in lines[1:]:
        file, size, mtime, ino, ctime, digest = line.rsplit(",", 5)
        if len(digest) != 40 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"bad digest {digest!r}")
        memo[file] = ((int(size), int(mtime), int(ino), int(ctime)), digest)
    return memo


def content_hashes(
    ws: Workspace, paths: Sequence[str | os.PathLike[str]], *, gone_ok: bool = False
) -> list[str]:
    """The content hash of every file in ``paths`` (absolute), in order; files whose stamp
    (size, mtime_ns, inode, ctime_ns) is unchanged since they were last hashed are not read.

    The memo is rewritten only when a file was hashed, and a read-only workspace only costs
    the hashing.

    Args:
        gone_ok: a file that no longer exists gets the hash it had when last seen (so stored
            vectors stay usable after the audio was deleted); without a memo entry it is
            still a FileNotFoundError.
    """
    memo_path = ws.root / MEMO_NAME
    memo = _read_memo(memo_path)
    out: list[str] = []
    changed = False
    for p in paths:
        key = str(p)
        hit = memo.get(key)
        try:
            stamp = _stamp(os.stat(key))
        except FileNotFoundError:
            if gone_ok and hit is not None:
                out.append(hit[1])
                continue
            raise
        if hit is not None and hit[0] == stamp:
            out.append(hit[1])
            continue
        digest = file_sha1(key)
        out.append(digest)
        if time.time_ns() - stamp[3] > RACY_NS:  # see RACY_NS
            memo[key] = (stamp, digest)
            changed = True
    if changed:
        rows = [_HEADER] + [f"{p},{s[0]},{s[1]},{s[2]},{s[3]},{d}" for p, (s, d) in memo.items()]
        with contextlib.suppress(OSError):  # a read-only workspace: hash again next time
            atomic_write_text(memo_path, checked_text("\n".join(rows) + "\n"))
    return out


def item_hashes(
    ws: Workspace, dataset: str, manifest: Any, *, compute: bool = False
) -> dict[str, str]:
    """``id -> content hash`` of ``manifest``'s items in ``dataset`` (the leakage checks' one
    way to the hashes: folds, ``predict``, ``check``).

    The dataset's map (:func:`sslstack.datasets.item_hashes`) holds every item it was
    registered with. Items it lacks, or every item when the map cannot be read (a legacy
    dataset whose files are gone), are absent unless ``compute`` hashes their files.
    """
    from .datasets import item_hashes as dataset_map
    from .errors import SslstackError

    try:
        known = dataset_map(ws, dataset)
    except SslstackError:
        known = {}
    out = {i: known[i] for i in manifest.ids if i in known}
    if compute and len(out) < len(manifest):
        rows = [
            (i, p)
            for i, p in zip(manifest.ids, manifest.frame["path"], strict=True)
            if i not in out and os.path.isfile(p)
        ]
        if rows:
            digests = content_hashes(ws, [p for _, p in rows])
            out.update({i: d for (i, _), d in zip(rows, digests, strict=True)})
    return out


def duplicate_sets(ids: Sequence[str], hashes: Mapping[str, str]) -> list[list[str]]:
    """Sets of two or more ``ids`` with the same content hash, each in ``ids`` order."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        h = hashes.get(i)
        if h is not None:
            by_hash[h].append(i)
    return [members for members in by_hash.values() if len(members) > 1]


def content_groups(
    ids: Sequence[str], hashes: Mapping[str, str], groups: Sequence[str] | None = None
) -> np.ndarray:
    """One group code per item: items with the same content hash share a code, and so do items
    of the same ``groups`` value (speaker, recording); groups linked through shared content are
    merged (union-find), so no split can separate any of them."""
    parent = list(range(len(ids)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[tuple[str, str], int] = {}
    keys = [("h", hashes[i]) if i in hashes else None for i in ids]
    for n in range(len(ids)):
        for key in (keys[n], None if groups is None else ("g", str(groups[n]))):
            if key is None:
                continue
            m = first.setdefault(key, n)
            ra, rb = find(n), find(m)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(n) for n in range(len(ids))], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1]
