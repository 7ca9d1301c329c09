"""Damaged, truncated and bit-flipped parts; leftovers of killed writers; a full disk."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sslstack import extract, load_embeddings
from sslstack.cache import Store
from sslstack.embeddings import find_store
from sslstack.errors import SslstackWarning, StoreError
from tests.audio_fixtures import write_dataset
from tests.faults.helpers import (
    cli,
    damage_header,
    env,
    flip_bits,
    one_line_error,
    parts_of,
    truncate,
)

POOLS = ("mean", "max")


def _extract(man: Path, ws: Path, **kw: object):  # noqa: ANN202
    return extract(man, "logmel", workspace=ws, pools=POOLS, **kw)


def _same_as_clean(ws: Path, clean: Path) -> None:
    for pool in POOLS:
        ids, a = load_embeddings("logmel", 0, pool, workspace=ws)
        cids, b = load_embeddings("logmel", 0, pool, workspace=clean)
        assert ids == cids
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "header", "flipped"])
def test_damaged_part_is_quarantined_counted_missing_and_recomputed(
    tmp_path: Path, damage: str
) -> None:
    man = write_dataset(tmp_path / "d", 12)
    ws, clean = tmp_path / "ws", tmp_path / "clean"
    _extract(man, clean)
    _extract(man, ws)
    st = find_store("logmel", ws)
    (part,) = parts_of(st.path)
    harm = {"truncated": truncate, "header": damage_header, "flipped": _flip_mean}[damage]
    harm(part)
    # every command still works: `cache ls` names the part in one warning line, no traceback
    r = cli("cache", "ls", "-w", str(ws), "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    if damage != "flipped":  # the index reads ids only: flipped vector bits show on reading
        assert f"part {part.name} is damaged" in r.stderr and "quarantine" in r.stderr
    # reading the vectors never returns changed numbers: one clear error instead
    warned = pytest.warns(SslstackWarning) if damage == "flipped" else contextlib.nullcontext()
    with warned, pytest.raises(StoreError, match="run 'sslstack extract'"):
        load_embeddings("logmel", 0, "mean", workspace=ws)
    assert not part.exists() and len(list((st.path / "quarantine").iterdir())) == 1
    # the next extract recomputes exactly the lost items and matches a clean run bit for bit
    res = _extract(man, ws)
    assert res.computed == 12 and res.cached == 0
    _same_as_clean(ws, clean)
    assert _extract(man, ws).computed == 0


def _flip_mean(part: Path) -> None:
    flip_bits(part, "clip/mean")


def test_extract_finds_flipped_bits_that_no_read_touched(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 8)
    ws, clean = tmp_path / "ws", tmp_path / "clean"
    _extract(man, clean)
    _extract(man, ws)
    (part,) = parts_of(find_store("logmel", ws).path)
    flip_bits(part, "clip/max", n=16, seed=3)
    r = cli("extract", "--model", "logmel", "--data", str(man), "-w", str(ws), "--pool", "mean,max")
    assert r.returncode == 0, r.stderr
    assert "checksum mismatch" in r.stderr and "8 computed, 0 cached" in r.stderr, r.stderr
    _same_as_clean(ws, clean)


_KILL_IN_COMPACTION = textwrap.dedent(
    """
    import os, signal, sys
    from sslstack import extract
    import sslstack.cache.writer as store
    real = store._write_bytes
    def half_then_die(path, data):
        if b"supersedes" in data and b'"part-' in data:
            path.write_bytes(data[: len(data) // 2])  # the merged part is half written
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)
    if sys.argv[3] == "before-rename":
        store._write_bytes = half_then_die
    else:  # after the merged part is in place, before the superseded parts are deleted
        import sslstack.cache.committer as committer
        committer.delete_superseded = lambda st: os.kill(os.getpid(), signal.SIGKILL)
    extract(sys.argv[1], "logmel", workspace=sys.argv[2], batch_seconds=1.0, pools=("mean", "max"))
    """
)


@pytest.mark.parametrize("when", ["before-rename", "after-rename"])
def test_killed_compaction_leftovers_are_cleaned_by_the_next_run(tmp_path: Path, when: str) -> None:
    man = write_dataset(tmp_path / "d", 10)
    ws, clean = tmp_path / "ws", tmp_path / "clean"
    _extract(man, clean)
    p = subprocess.run(
        [sys.executable, "-c", _KILL_IN_COMPACTION, str(man), str(ws), when], env=env()
    )
    assert p.returncode == -signal.SIGKILL
    st = find_store("logmel", ws)
    left = st.leftovers()
    assert left["temporary"] + left["superseded"] >= 1 and left["wasted_bytes"] > 0, left
    r = cli("cache", "ls", "-w", str(ws))
    assert "wasted" in r.stdout + r.stderr and "MiB" in r.stdout + r.stderr, r.stdout
    res = _extract(man, ws)  # nothing to compute: it still cleans and compacts
    assert res.computed == 0 and res.cached == 10
    assert st.leftovers()["wasted_bytes"] == 0
    assert len(parts_of(st.path)) == 1 and not list((st.path / "parts").glob(".*"))
    _same_as_clean(ws, clean)


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    sys.argv = ["sslstack", "extract", "--model", "logmel", "--data", sys.argv[1],
                "--pool", "mean,std,max", "--storage", "float32", "--batch-seconds", "400"]
    from sslstack.cli import main
    main()
    """
)


def test_a_write_that_runs_out_of_space_is_one_line_and_leaves_no_tmp(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes every file larger than the limit fail to write, like a full disk
    # (root is not needed; the tmpfs variant runs in `make faults`)
    man = write_dataset(tmp_path / "d", 100, min_s=0.2, max_s=0.4)
    ws = tmp_path / "ws"
    e = env(SSLSTACK_WORKSPACE=str(ws))
    r = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(man), str(40_000)],
        capture_output=True,
        text=True,
        env=e,
        cwd=tmp_path,
    )
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])  # not 139 (segfault)
    line = one_line_error(r)
    assert "no space left" in line and str(ws / "stores") in line, line
    st = find_store("logmel", ws)
    assert not list((st.path / "parts").glob(".*.tmp"))
    res = extract(man, "logmel", workspace=ws, pools=("mean", "std", "max"), storage="float32")
    assert res.computed == 100  # nothing half-written was kept or read


def test_cache_ls_reports_wasted_bytes_and_healthy_store_says_none(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 4)
    ws = tmp_path / "ws"
    _extract(man, ws)
    st = Store(find_store("logmel", ws).path)
    info = st.info()
    assert info["wasted_bytes"] == 0 and info["bytes"] == os.path.getsize(parts_of(st.path)[0])
    r = cli("cache", "ls", "-w", str(ws))
    assert r.returncode == 0 and "wasted" not in r.stdout + r.stderr
