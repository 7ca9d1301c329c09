"""Reading a store folder: its parts, the index from content hash to row, and the vectors.

Rows are keyed by **content hash** (the hash of what was encoded): a part's ``hashes`` column
is the key, its ``ids`` column a name for people. Parts of schema 1 (keyed by id) carry the
same columns, so they are read the same way. Readers take every part not listed in another
part's ``supersedes``; where a hash appears in several parts the newest (by name) wins; a
failure counts only for a hash without a vector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from ..errors import DamagedFileError, StoreError
from ..workspace import read_json
from .item import ItemResult
from .key import StoreKey, window_pool_name
from .leases import gone_temporaries
from .parts import DamagedPart, attr_json, leftovers, open_part, quarantine, verify_part

T = TypeVar("T")


@dataclass
class Loc:
    """Where a content hash's vectors are: a part and a row of it."""

    part: str
    row: int


_REDO = "move the store's folder away and run 'sslstack extract' again"


class StoreReader:
    """A store folder, read. Opening reads only ``key.json``; data is read on demand."""

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
        self._index: dict[str, Loc] | None = None
        self._names: dict[str, str] = {}
        self._failed: dict[str, tuple[str, str]] | None = None
        self._parts_seen: tuple[str, ...] = ()
        self._layer_names: list[str] | None = None
        self._quarantined: set[str] = set()

    # ---------------------------------------------------------------- parts
    def _part_names(self) -> list[str]:
        parts = self.path / "parts"
        return sorted(p.name for p in parts.glob("part-*.h5")) if parts.exists() else []

    def _live_parts(self) -> list[str]:
        """Parts not superseded by another part; listed again when a compaction removes a
        part while it is being read (the merged part is then in the new listing)."""
        for attempt in range(5):
            try:
                return self._list_live()
            except FileNotFoundError:
                time.sleep(0.05 * (attempt + 1))
        return self._list_live()

    def _list_live(self) -> list[str]:
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

    def _size(self, name: str) -> int:
        try:
            return (self.path / "parts" / name).stat().st_size
        except FileNotFoundError:
            return 0

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

        Returns the names of the parts set aside. Costs one full read of the store.
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
        """Temporary files of gone writers, superseded and quarantined parts: counts, bytes."""
        return leftovers(
            self.path, self._live_parts(), self._part_names(), gone_temporaries(self.path)
        )

    # ---------------------------------------------------------------- the index
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
        index: dict[str, Loc] = {}
        names: dict[str, str] = {}
        failed: dict[str, tuple[str, str]] = {}
        layer_names = None
        kept = []
        for name in self._live_parts():  # oldest first: a later part overrides an earlier one
            try:
                layer_names = self._index_part(name, index, names, failed, layer_names)
                kept.append(name)
            except DamagedPart as e:
                self._set_aside(e)
        self._index, self._names, self._parts_seen = index, names, tuple(kept)
        self._failed = {h: v for h, v in failed.items() if h not in index}
        self._layer_names = layer_names

    def _index_part(
        self,
        name: str,
        index: dict[str, Loc],
        names: dict[str, str],
        failed: dict[str, tuple[str, str]],
        layer_names: list[str] | None,
    ) -> list[str] | None:
        """Add one part's rows and failures to the index (read fully before any is added)."""
        with open_part(self.path / "parts" / name) as f:
            found = attr_json(f, "layer_names", None)
            ids = f["ids"].asstr()[:]
            hashes = f["hashes"].asstr()[:]
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
        for row, (item, h) in enumerate(zip(ids, hashes, strict=True)):
            index[h] = Loc(name, row)
            names[h] = item
        for item, h, err in fails:
            failed[h] = (item, err)
        return layer_names if layer_names is not None else found

    @property
    def index(self) -> dict[str, Loc]:
        """content hash -> where its vectors are."""
        if self._index is None:
            self.refresh()
        assert self._index is not None
        return self._index

    @property
    def failures(self) -> dict[str, tuple[str, str]]:
        """content hash -> (name, error) of contents that failed and have no vector."""
        if self._failed is None:
            self.refresh()
        assert self._failed is not None
        return {h: v for h, v in self._failed.items() if h not in self.index}

    def keys(self) -> list[str]:
        """Content hashes of the stored items, sorted."""
        return sorted(self.index)

    def names(self) -> dict[str, str]:
        """content hash -> the id of the row read for it (for people, not a key)."""
        self.index  # noqa: B018  (builds the index and the names)
        return dict(self._names)

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

    def check_pool(self, pool: str, windows: bool = False) -> None:
        """Raise a one-line StoreError when the store holds no pooling ``pool``."""
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

    def check_keys(self, keys: Sequence[str], names: Sequence[str] | None = None) -> None:
        """Raise a one-line StoreError naming the items (by ``names`` when given) whose
        content has no vectors."""
        missing = [n for n, k in enumerate(keys) if k not in self.index]
        if missing:
            shown = [names[n] if names is not None else keys[n] for n in missing[:5]]
            raise StoreError(
                f"{self.path.name}: {len(missing)} of {len(keys)} item(s) have no embeddings "
                f"(first: {', '.join(shown)}); run 'sslstack extract' on them first"
            )

    # ---------------------------------------------------------------- vectors
    def read(
        self, layer: int | str, pool: str = "mean", keys: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """One layer and pooling of the items of content hashes ``keys`` (every stored item
        when None) as float32: ``(keys, X)``.

        Raises:
            StoreError: unknown layer or pooling, or contents the store does not hold.
        """
        return self._again_if_gone(lambda: self._read(layer, pool, keys))

    def _read(
        self, layer: int | str, pool: str, keys: Sequence[str] | None
    ) -> tuple[list[str], np.ndarray]:
        self.check_pool(pool)
        col = self.layer_index(layer)
        want = self.keys() if keys is None else list(keys)
        self.check_keys(want)
        out: np.ndarray | None = None
        by_part: dict[str, tuple[list[int], list[int]]] = {}
        for pos, key in enumerate(want):
            loc = self.index[key]
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
            uniq, inverse = np.unique(srt, return_inverse=True)  # h5py needs increasing rows
            rows = np.empty((len(src), ds.shape[2]), dtype=ds.dtype)
            rows[order] = ds[uniq, col, :][inverse]
            return rows

    def read_items(self, keys: Sequence[str]) -> list[ItemResult]:
        """The whole stored records of content hashes ``keys`` (every pooling, layer and
        window, as float32), in the form the writer takes them."""
        return self._again_if_gone(lambda: self._read_items(keys))

    def _read_items(self, keys: Sequence[str]) -> list[ItemResult]:
        self.check_keys(keys)
        by_part: dict[str, list[tuple[str, int]]] = {}
        for key in keys:
            loc = self.index[key]
            by_part.setdefault(loc.part, []).append((key, loc.row))
        out: dict[str, ItemResult] = {}
        for part, rows in by_part.items():
            with open_part(self.path / "parts" / part) as f:
                for key, row in rows:
                    out[key] = _record(f, row)
        return [out[k] for k in keys]

    def read_windows(
        self, layer: int | str, pool: str = "mean", keys: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Per-window embeddings: (content hash per window, start, (w, D) float32)."""
        return self._again_if_gone(lambda: self._read_windows(layer, pool, keys))

    def _read_windows(
        self, layer: int | str, pool: str, keys: Sequence[str] | None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        if self.key.window is None:
            raise StoreError(f"{self.path.name}: not a windowed store (extract with --window)")
        self.check_pool(pool, windows=True)
        col = self.layer_index(layer)
        if keys is not None:
            self.check_keys(keys)  # a key without a vector must not reach the part's lookup
        wanted = set(self.index if keys is None else keys)
        out_keys: list[str] = []
        starts: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for part in self._parts_seen:
            try:
                got = self._read_part_windows(part, pool, col, wanted)
            except DamagedPart as e:
                raise self._damaged(e) from None
            if got is not None:
                out_keys += got[0]
                starts.append(got[1])
                vecs.append(got[2])
        if not vecs:
            return [], np.zeros(0), np.zeros((0, 0), dtype=np.float32)
        return out_keys, np.concatenate(starts), np.concatenate(vecs)

    def _read_part_windows(
        self, part: str, pool: str, col: int, wanted: set[str]
    ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        with open_part(self.path / "parts" / part) as f:
            if "windows" not in f:
                return None
            hashes = f["hashes"].asstr()[:]
            item = f["windows/item"][:]
            keep = np.array(
                [
                    hashes[r] in wanted
                    and self.index[hashes[r]].part == part
                    and self.index[hashes[r]].row == r
                    for r in item
                ],
                dtype=bool,
            )
            if not keep.any():
                return None
            return (
                [hashes[r] for r in item[keep]],
                f["windows/start"][:][keep],
                f[f"windows/{pool}"][:, col, :][keep].astype(np.float32),
            )


def extents(f: h5py.File) -> np.ndarray:
    """A part's extents (schema 1 called them ``durations``)."""
    return f["extents"][:] if "extents" in f else f["durations"][:]


def _record(f: h5py.File, row: int) -> ItemResult:
    """One row of an open part as an ItemResult."""
    clip = {p: f[f"clip/{p}"][row].astype(np.float32) for p in f["clip"]}
    starts: list[float] = []
    windows: dict[str, np.ndarray] = {}
    if "windows" in f:
        sel = np.flatnonzero(f["windows/item"][:] == row)
        starts = [float(s) for s in f["windows/start"][sel]]
        pools = [p for p in f["windows"] if p not in ("item", "start")]
        windows = {p: f[f"windows/{p}"][sel].astype(np.float32) for p in pools}
    name, key = f["ids"].asstr()[row], f["hashes"].asstr()[row]
    return ItemResult(name, key, float(extents(f)[row]), clip, starts, windows)
