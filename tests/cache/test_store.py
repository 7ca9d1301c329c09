"""The store contract: what is written is read back, newer parts win, compaction changes nothing
a reader can see, a concurrent reader never fails or sees a torn value, keys and locks refuse.

Everything runs on small synthetic :class:`ItemResult` data through the public API of
:class:`Store` and :class:`StoreWriter`; the damaged-part and killed-writer cases live in
tests/faults/test_store_faults.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from sslstack.cache import ItemResult, Store, StoreKey
from sslstack.cache import committer as commit_module
from sslstack.errors import StoreError, StoreLockedError
from tests.faults.helpers import env, parts_of

LAYERS = ["0", "1", "final"]
DIM = 5
POOLS = ("mean", "max")


def _key(window: bool = True, **kw: object) -> StoreKey:
    base: dict[str, object] = {"revision": "r1", "storage": "float16", **kw}
    if window:
        base.update(window=1.0, hop=0.5)
    return StoreKey(model="synth/enc", sample_rate=16000, pools=POOLS, **base)  # type: ignore[arg-type]


def _item(store: Store, item: str, seed: int, n_windows: int = 0) -> ItemResult:
    """Random values with many digits (float16 storage rounds them), every clip pool."""
    rng = np.random.default_rng(seed)
    clip = {p: rng.normal(size=(len(LAYERS), DIM)).astype(np.float32) for p in store.clip_pools()}
    windows = {}
    if store.key.window is not None:
        windows = {
            p: rng.normal(size=(n_windows, len(LAYERS), DIM)).astype(np.float32)
            for p in store.key.pools
        }
    starts = [0.5 * k for k in range(n_windows)]
    # the store is keyed by content hash: the tests' item names are those keys
    return ItemResult(f"name-{item}-{seed}", item, 1.0 + seed / 7, clip, starts, windows)


def _stored(x: np.ndarray, store: Store) -> np.ndarray:
    """What a read returns for written values ``x``: rounded through the storage dtype."""
    return x.astype(store.key.storage).astype(np.float32)


def _new(tmp_path: Path, **kw: object) -> Store:
    return Store.open_or_create(tmp_path / "stores", _key(**kw))  # type: ignore[arg-type]


def _write_parts(store: Store, batches: Sequence[Sequence[ItemResult]], **kw: object) -> None:
    """Each batch as one part, without the commit (compaction) that closing a writer does."""
    with store.part_writer() as w:
        for batch in batches:
            w.write(batch, LAYERS, **kw)  # type: ignore[arg-type]
    store.refresh()


def _snapshot(store: Store) -> dict[str, object]:
    """Everything a reader can see, as plain values."""
    store.refresh()
    snap: dict[str, object] = {
        "keys": store.keys(),
        "names": store.names(),
        "failures": store.failures,
        "layers": store.layer_names,
    }
    for pool in store.clip_pools():
        for layer in LAYERS:
            snap[f"clip/{pool}/{layer}"] = store.read(layer, pool)
    if store.key.window is not None:
        for pool in store.key.pools:
            for layer in LAYERS:
                snap[f"win/{pool}/{layer}"] = _windows_by_id(store, layer, pool)
    return snap


def _windows_by_id(store: Store, layer: str, pool: str) -> dict[tuple[str, float], bytes]:
    wids, starts, vecs = store.read_windows(layer, pool)
    out = {(i, float(s)): v.tobytes() for i, s, v in zip(wids, starts, vecs, strict=True)}
    assert len(out) == len(wids)  # no window twice
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, tuple):  # (ids, matrix) of read()
            assert va[0] == vb[0], k  # type: ignore[index]
            np.testing.assert_array_equal(va[1], vb[1], err_msg=k)  # type: ignore[index]
        else:
            assert va == vb, k


# ------------------------------------------------------------------ write, read


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_write_then_read_returns_what_was_written(tmp_path: Path, storage: str) -> None:
    st = _new(tmp_path, storage=storage)
    items = [_item(st, f"a{i}", i, n_windows=i % 4) for i in range(9)]  # a0 has no window
    _write_parts(st, [items[:4], items[4:]])  # two parts
    st.refresh()
    assert st.info()["parts"] == 2
    if storage == "float16":  # the rounding is real, so the comparison below can fail
        assert not np.array_equal(_stored(items[1].clip["mean"], st), items[1].clip["mean"])
    assert st.keys() == sorted(it.hash for it in items) and st.layer_names == LAYERS
    assert st.names() == {it.hash: it.id for it in items} and st.failures == {}
    by_id = {it.hash: it for it in items}
    order = ["a7", "a0", "a3", "a8", "a4"]  # across both parts, out of order
    for pool in ("mean", "max", "mean_wmax", "max_wmax"):
        for col, layer in enumerate(LAYERS):
            for want in (None, order):
                ids, x = st.read(layer, pool, want)
                assert ids == (st.keys() if want is None else order)
                assert x.dtype == np.float32 and x.shape == (len(ids), DIM)
                ref = np.stack([_stored(by_id[i].clip[pool][col], st) for i in ids])
                np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(st.read(-1, "max")[1], st.read("final", "max")[1])
    np.testing.assert_array_equal(st.read(1, "max")[1], st.read("1", "max")[1])
    for pool in POOLS:
        for col, layer in enumerate(LAYERS):
            wids, starts, vecs = st.read_windows(layer, pool)
            ref = {
                (it.hash, s): _stored(it.windows[pool][k, col], st)
                for it in items
                for k, s in enumerate(it.window_starts)
            }
            got = list(zip(wids, starts.tolist(), vecs, strict=True))
            assert sorted((i, s) for i, s, _ in got) == sorted(ref)
            for i, s, v in got:
                np.testing.assert_array_equal(v, ref[(i, s)])
    wids, starts, _ = st.read_windows("0", "mean", ["a3", "a5"])
    got = sorted(zip(wids, starts.tolist(), strict=True))
    assert got == [("a3", 0.0), ("a3", 0.5), ("a3", 1.0), ("a5", 0.0)]
    info = st.info()
    assert (info["items"], info["layers"], info["dim"], info["storage"]) == (9, 3, DIM, storage)
    assert info["pools"] == ["mean", "max", "mean_wmax", "max_wmax"] and info["failed"] == 0


def test_unknown_ids_pool_layer_raise_store_error_naming_them(tmp_path: Path) -> None:
    st = _new(tmp_path)
    with pytest.raises(StoreError, match="holds no embeddings"):
        st.read("0", "mean")
    _write_parts(st, [[_item(st, "a", 1, 2), _item(st, "b", 2, 1)]])
    with pytest.raises(StoreError, match=r"1 of 2 item\(s\) have no embeddings \(first: nope\)"):
        st.read("0", "mean", ["a", "nope"])
    with pytest.raises(StoreError, match="no pooling 'median'; the store holds mean, max, mean_"):
        st.read("0", "median")
    with pytest.raises(StoreError, match="no pooling 'mean_wmax'; the store holds mean, max$"):
        st.read_windows("0", "mean_wmax")  # windows have no window-max pooling
    for bad in (7, "last", -4):
        with pytest.raises(StoreError, match=f"no layer {bad!r}; the store holds layers 0, 1, f"):
            st.read(bad, "mean")
        with pytest.raises(StoreError, match=f"no layer {bad!r}"):
            st.read_windows(bad, "mean")
    with pytest.raises(StoreError, match=r"have no embeddings \(first: nope\)"):
        st.read_windows("0", "mean", ["a", "nope"])
    with pytest.raises(StoreError, match=r"have no embeddings \(first: nope\)"):
        st.read_items(["b", "nope"])
    flat = Store.open_or_create(tmp_path / "stores", _key(window=False))
    _write_parts(flat, [[_item(flat, "a", 1)]])
    with pytest.raises(StoreError, match="not a windowed store"):
        flat.read_windows("0", "mean")
    with pytest.raises(StoreError, match="no pooling 'mean_wmax'; the store holds mean, max$"):
        flat.read("0", "mean_wmax")


# ------------------------------------------------------------------ newer parts win


def test_a_later_part_overrides_an_earlier_one(tmp_path: Path) -> None:
    st = _new(tmp_path)
    old = [_item(st, "a", 1, n_windows=3), _item(st, "b", 2, n_windows=1)]
    new_a = _item(st, "a", 11, n_windows=2)
    _write_parts(st, [old, [new_a]])
    snap = None
    for compacted in (False, True):
        st.refresh()
        assert st.info()["parts"] == (1 if compacted else 2)
        assert st.keys() == ["a", "b"] and st.names() == {"a": new_a.id, "b": old[1].id}
        for col, layer in enumerate(LAYERS):
            _, x = st.read(layer, "mean_wmax", ["a", "b"])
            np.testing.assert_array_equal(x[0], _stored(new_a.clip["mean_wmax"][col], st))
            np.testing.assert_array_equal(x[1], _stored(old[1].clip["mean_wmax"][col], st))
        wids, starts, vecs = st.read_windows("1", "max")
        got = sorted(zip(wids, starts.tolist(), strict=True))
        assert got == [("a", 0.0), ("a", 0.5), ("b", 0.0)]  # the old a's window at 1.0 is gone
        a_rows = vecs[np.asarray(wids) == "a"]
        np.testing.assert_array_equal(a_rows, _stored(new_a.windows["max"][:, 1], st))
        (rec,) = st.read_items(["a"])
        assert (rec.id, rec.hash, rec.window_starts) == (new_a.id, "a", [0.0, 0.5])
        np.testing.assert_array_equal(rec.clip["max"], _stored(new_a.clip["max"], st))
        if snap is None:
            snap = _snapshot(st)
            with st.writer():
                pass  # closing compacts the two parts
        else:
            _assert_same(snap, _snapshot(st))


def test_a_failure_counts_only_for_content_without_a_vector_and_success_clears_it(
    tmp_path: Path,
) -> None:
    """A content that was encoded once has a valid vector whatever a later attempt says (the
    same bytes decode the same way); a content that only failed is a known failure until a
    vector arrives."""
    st = _new(tmp_path)
    a1, b = _item(st, "a", 1, 2), _item(st, "b", 2, 1)
    _write_parts(st, [[a1, b]])
    _write_parts(st, [[]], failures=[("name-a", "a", "flaky"), ("name-c", "c", "cannot decode")])
    for view in (st, Store(st.path)):  # this process and a fresh opening agree
        view.refresh()
        assert view.keys() == ["a", "b"] and view.failures == {"c": ("name-c", "cannot decode")}
        assert view.info()["failed"] == 1
        np.testing.assert_array_equal(
            view.read("1", "max", ["a"])[1][0], _stored(a1.clip["max"][1], st)
        )
        with pytest.raises(StoreError, match=r"first: c\)"):
            view.read_windows("0", "mean", ["c"])
    with st.writer():
        pass  # compaction keeps the failure and every vector
    assert len(parts_of(st.path)) == 1
    assert st.keys() == ["a", "b"] and st.failures == {"c": ("name-c", "cannot decode")}
    c = _item(st, "c", 3, 1)
    _write_parts(st, [[c]])
    st.refresh()
    assert st.keys() == ["a", "b", "c"] and st.failures == {} and st.info()["failed"] == 0
    np.testing.assert_array_equal(st.read("1", "max", ["c"])[1][0], _stored(c.clip["max"][1], st))


# ------------------------------------------------------------------ compaction


def test_compaction_keeps_every_value_with_fewer_parts_and_deletes_superseded(
    tmp_path: Path,
) -> None:
    st = _new(tmp_path)
    batches = [
        [_item(st, f"p{p}i{i}", 10 * p + i, (p + i) % 3) for i in range(3)] for p in range(4)
    ]
    batches.append([_item(st, "p0i1", 99, 2)])  # overrides an item of the first part
    _write_parts(st, batches, failures=[])
    _write_parts(st, [[]], failures=[("name-x", "x", "decode error")])
    before = _snapshot(st)
    old_parts = parts_of(st.path)
    assert len(old_parts) == 6 and len(before["keys"]) == 12  # type: ignore[arg-type]
    (st.path / "parts" / ".part-killed.tmp").write_bytes(b"half")  # a killed writer's leftover
    report = st.heal()  # what extract does first: clean, then compact
    assert (report["temporary"], report["superseded"], report["set_aside"]) == (1, 0, [])
    (merged,) = parts_of(st.path)
    assert merged not in old_parts and not any(p.exists() for p in old_parts)
    assert not list((st.path / "parts").glob(".*"))
    with h5py.File(merged, "r") as f:  # the stale rows were dropped, not copied
        assert sorted(f["hashes"].asstr()[:]) == before["keys"]
        assert f["windows/item"].shape[0] == len(_windows_by_id(st, "0", "mean"))
    _assert_same(before, _snapshot(st))
    _assert_same(before, _snapshot(Store(st.path)))
    assert st.info()["parts"] == 1 and st.leftovers()["wasted_bytes"] == 0
    mtime = merged.stat().st_mtime_ns
    assert st.commit()["merged"] == 0  # one part: nothing to merge, nothing rewritten
    assert parts_of(st.path) == [merged] and merged.stat().st_mtime_ns == mtime


# ------------------------------------------------------------------ a concurrent reader

_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from sslstack.cache import ItemResult, Store
    st = Store(sys.argv[1])
    n_ids, gens = int(sys.argv[2]), int(sys.argv[3])
    layers = ["0", "1", "final"]
    def item(i, g):  # every number of the record encodes (id, generation)
        v = np.full((3, 5), 100.0 * i + g, np.float32)
        clip = {p: v for p in st.clip_pools()}
        return ItemResult(f"name{i}-{g}", f"x{i}", 1.0, clip)
    for g in range(1, gens + 1):
        with st.writer("concurrent-test") as w:  # closing compacts the parts of this round
            for lo in range(0, n_ids, 3):
                w.write([item(i, g) for i in range(lo, min(lo + 3, n_ids))], layers)
        time.sleep(0.02)  # the reader gets a turn even on a loaded machine
    """
)


def _check_rows(ids: list[str], x: np.ndarray, last: dict[str, float]) -> set[float]:
    """Every row is one record (never torn), of a generation no older than seen before."""
    gens = set()
    for item, row in zip(ids, x, strict=True):
        i = int(item[1:])
        assert np.all(row == row[0]), (item, row)  # one write, not two halves
        g = float(row[0]) - 100.0 * i
        assert g == int(g) and g >= 0, (item, row)
        assert g >= last.get(item, 0), (item, g, last)  # old or new, never back
        last[item] = g
        gens.add(g)
    return gens


def test_a_reader_during_writes_and_compaction_never_errors_or_sees_torn_values(
    tmp_path: Path,
) -> None:
    st = _new(tmp_path, window=False, storage="float32")
    n_ids, gens = 10, 25
    first = [
        ItemResult(
            f"n{i}", f"x{i}", 1.0, {p: np.full((3, 5), 100.0 * i, np.float32) for p in POOLS}
        )
        for i in range(n_ids)
    ]
    with st.writer() as w:
        w.write(first, LAYERS)
    want = [f"x{i}" for i in range(n_ids)]
    fresh, stale = Store(st.path), Store(st.path)  # one re-lists each round, one never does
    last_fresh: dict[str, float] = {}
    last_stale: dict[str, float] = {}
    seen: set[float] = set()
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(st.path), str(n_ids), str(gens)], env=env()
    )
    rounds = 0
    while child.poll() is None or rounds < 3:
        fresh.refresh()
        for layer in LAYERS:
            seen |= _check_rows(*fresh.read(layer, "max", want), last_fresh)
        _check_rows(*stale.read("final", "mean", want), last_stale)
        rounds += 1
    assert child.wait() == 0
    fresh.refresh()
    assert _check_rows(*fresh.read("0", "max", want), last_fresh) == {float(gens)}
    assert len(seen) >= 3, (seen, rounds)  # the reads did overlap the writes
    assert len(parts_of(st.path)) == 1


def test_a_reader_whose_parts_were_compacted_away_rereads_the_listing(tmp_path: Path) -> None:
    st = _new(tmp_path)
    a, b = _item(st, "a", 1, 2), _item(st, "b", 2, 1)
    _write_parts(st, [[a], [b]])
    reader = Store(st.path)
    assert reader.keys() == ["a", "b"]  # its index names the two parts
    with st.writer():
        pass  # compaction replaces them by one and deletes them
    np.testing.assert_array_equal(reader.read("0", "max")[1][1], _stored(b.clip["max"][0], st))
    (rec,) = reader.read_items(["a"])
    np.testing.assert_array_equal(rec.windows["mean"], _stored(a.windows["mean"], st))
    with st.writer() as w:
        w.write([_item(st, "c", 3, 1)], LAYERS)
    assert reader.read("0", "max")[0] == ["a", "b", "c"]  # re-listed
    with st.writer() as w:
        w.write([_item(st, "d", 4, 2)], LAYERS)
    assert sorted(reader.read_windows("0", "mean")[0]) == ["a", "a", "b", "c", "d", "d"]


def test_a_part_deleted_while_hdf5_opens_it_is_relisted_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = _new(tmp_path)
    a, b = _item(st, "a", 1, 1), _item(st, "b", 2, 1)
    _write_parts(st, [[a], [b]])
    reader = Store(st.path)
    assert reader.keys() == ["a", "b"]
    victim = parts_of(st.path)[0]
    monkeypatch.setattr(commit_module, "delete_superseded", lambda store: 0)
    with st.writer():
        pass  # the merged part is in place; the compaction has not deleted the old ones yet
    real = h5py.File

    def deleted_meanwhile(path: object, *args: object, **kw: object) -> h5py.File:
        if Path(str(path)) == victim:  # the compaction deletes it between open() and stat()
            victim.unlink()
            raise OSError("Unable to synchronously open file (can't retrieve stat info for file)")
        return real(path, *args, **kw)

    monkeypatch.setattr(h5py, "File", deleted_meanwhile)
    _, x = reader.read("final", "mean", ["a", "b"])
    np.testing.assert_array_equal(x[0], _stored(a.clip["mean"][2], st))
    assert not victim.exists() and not (st.path / "quarantine").exists()


# ------------------------------------------------------------------ keys and locks


def test_open_or_create_refuses_a_folder_holding_another_key(tmp_path: Path) -> None:
    root = tmp_path / "stores"
    st = Store.open_or_create(root, _key(), provenance=lambda: {"by": "first"})
    _write_parts(st, [[_item(st, "a", 1, 1)]])
    again = Store.open_or_create(root, _key(), provenance=lambda: {"by": "second"})
    assert again.path == st.path and again.keys() == ["a"] and again.provenance == {"by": "first"}
    other = _key(storage="float32", revision="r2")
    assert other.dirname() != st.path.name  # a changed setting is a new folder ...
    shutil.copytree(st.path, root / other.dirname())  # ... unless one is copied by hand
    with pytest.raises(StoreError, match=str(root / other.dirname())) as e:
        Store.open_or_create(root, other)
    assert "revision: 'r2' != 'r1'" in str(e.value) and "storage: 'float32' != 'float16'" in str(
        e.value
    )
    assert "pools" not in str(e.value)  # only what differs is named
    (tmp_path / "bare").mkdir()
    with pytest.raises(StoreError, match="not an sslstack store"):
        Store(tmp_path / "bare")


_HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sslstack.cache.committer import store_lock
    with store_lock(Path(sys.argv[1]), "holder-test", 0):
        print("locked", flush=True)
        sys.stdin.read()  # until the parent closes it
    """
)


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Store, subprocess.Popen[str]]]:
    st = _new(tmp_path)
    _write_parts(st, [[_item(st, "a", 1, 1)], [_item(st, "b", 2, 1)]])
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(st.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    try:
        yield st, child
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


def test_writers_need_no_lock_and_a_commit_waits_for_the_one_holding_it(
    held_lock: tuple[Store, subprocess.Popen[str]],
) -> None:
    st, child = held_lock
    with st.part_writer("second") as w:  # writing while another process holds the lock
        w.write([_item(st, "c", 3, 1)], LAYERS)
        assert [x["command"] for x in st.writers()] == ["second"]  # its lease is visible
    assert st.writers() == []  # released on leaving
    locked = rf"committed by pid {child.pid} .*\(holder-test\)"
    with pytest.raises(StoreLockedError, match=locked):
        st.commit(wait=0.2)
    assert st.heal()["set_aside"] == []  # heal skips quietly: the holder may be compacting
    st.refresh()
    assert len(parts_of(st.path)) == 3 and st.keys() == ["a", "b", "c"]
    assert child.stdin is not None
    child.stdin.close()
    assert child.wait(timeout=30) == 0
    assert st.commit()["merged"] == 3  # free again: the three parts become one
    assert len(parts_of(st.path)) == 1 and st.keys() == ["a", "b", "c"]


# ------------------------------------------------------------------ read_items


def test_read_items_round_trips_through_write(tmp_path: Path) -> None:
    src = _new(tmp_path / "src")
    items = [_item(src, f"a{i}", i, n_windows=i % 3) for i in range(6)]
    _write_parts(src, [items[:3], items[3:]])
    src.refresh()
    want = ["a5", "a0", "a4", "a2"]  # across both parts, out of order
    records = src.read_items(want)
    assert [r.hash for r in records] == want
    by_id = {it.hash: it for it in items}
    for rec in records:
        it = by_id[rec.hash]
        assert rec.id == it.id and rec.extent == np.float32(it.extent)
        assert rec.window_starts == it.window_starts and rec.clip.keys() == it.clip.keys()
        for p in it.clip:
            assert rec.clip[p].dtype == np.float32
            np.testing.assert_array_equal(rec.clip[p], _stored(it.clip[p], src))
        for p in it.windows:
            np.testing.assert_array_equal(rec.windows[p], _stored(it.windows[p], src))
    # records copied into another store (under other names) read back bit for bit
    dst = _new(tmp_path / "dst")
    with dst.writer() as w:
        w.write([replace(r, id=f"copy-{r.id}") for r in records], src.layer_names)
    assert dst.keys() == sorted(want)
    assert dst.names() == {i: f"copy-{by_id[i].id}" for i in want}
    for pool in src.clip_pools():
        for layer in LAYERS:
            a = src.read(layer, pool, want)[1]
            b = dst.read(layer, pool, want)[1]
            np.testing.assert_array_equal(a, b)  # bit for bit: no second rounding
    for pool in POOLS:
        ref = _windows_by_id(src, "1", pool)
        assert _windows_by_id(dst, "1", pool) == {k: v for k, v in ref.items() if k[0] in want}
    back = dst.read_items(want)
    for r, c in zip(records, back, strict=True):
        assert (c.hash, c.extent, c.window_starts) == (r.hash, r.extent, r.window_starts)
        for p in r.clip:
            np.testing.assert_array_equal(c.clip[p], r.clip[p])
