"""Workspace files: atomic writes with the mode a plain open gives; OS errors as one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sslstack.workspace import atomic_write_bytes, atomic_write_json


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = tmp_path / "run.json"
        atomic_write_json(atomic, {"a": 1})
        mode = stat.S_IMODE(atomic.stat().st_mode)
        assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "submission.csv"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _can_mount() -> bool:
    import shutil

    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a read-only tmpfs")
def test_a_read_only_workspace_serves_cached_work_and_refuses_writes_in_one_line(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from tests.audio_fixtures import write_dataset

    man = write_dataset(tmp_path / "d", 6, labels=("a", "b", "c"))
    ws = tmp_path / "ws"
    ws.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "none", str(ws)]).returncode:
        pytest.skip("mount is not permitted here")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "SSLSTACK_WORKSPACE": str(ws)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "sslstack", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    try:
        assert run("extract", "--model", "logmel", "--data", str(man)).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(ws)], check=True)
        again = run("extract", "--model", "logmel", "--data", str(man))
        assert again.returncode == 0, again.stderr
        assert "0 computed, 6 cached" in again.stderr
        fit = run("fit-head", "logreg", "--model", "logmel", "--trials", "0", "--folds", "2")
        assert fit.returncode == 1 and "Traceback" not in fit.stderr
        lines = fit.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {ws}/datasets/")
        assert lines[0].endswith(
            "/folds.csv: Read-only file system — the file system is read-only; use a writable "
            "--workspace (or $SSLSTACK_WORKSPACE)"
        )
    finally:
        subprocess.run(["umount", str(ws)])


# -- the one reader ----------------------------------------------------------------------------


def test_damaged_json_and_csv_are_one_error_naming_the_file(tmp_path: Path) -> None:
    from sslstack.errors import DamagedFileError
    from sslstack.workspace import read_csv, read_json

    bad = tmp_path / "dataset.json"
    bad.write_bytes(b'{"name": "x\xff"}')  # not UTF-8 (was: UnicodeDecodeError)
    with pytest.raises(DamagedFileError, match=r"dataset.json: damaged: byte 0xff at offset 11"):
        read_json(bad)
    bad.write_text('{"name": "x"')  # cut
    with pytest.raises(DamagedFileError, match="not valid JSON"):
        read_json(bad)
    csv = tmp_path / "oof.csv"
    csv.write_bytes(b"id,fold\n1,\x80\n")
    with pytest.raises(DamagedFileError, match=r"oof.csv: damaged: byte 0x80"):
        read_csv(csv)


def test_a_checksummed_json_refuses_a_flip_that_still_parses(tmp_path: Path) -> None:
    from sslstack.errors import DamagedFileError
    from sslstack.workspace import read_json

    path = tmp_path / "run.json"
    atomic_write_json(path, {"score": 0.85, "labels": ["a", "b"]}, checksum=True)
    assert read_json(path, checksum=True)["score"] == 0.85
    path.write_text(path.read_text().replace("0.85", "0.95"))  # still valid JSON
    with pytest.raises(DamagedFileError, match="differs from its checksum"):
        read_json(path)


def test_a_damaged_derived_file_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    from sslstack.errors import SslstackWarning
    from sslstack.workspace import checked_text, read_checked_text, read_derived

    memo = tmp_path / "hashes.csv"
    memo.write_text(checked_text("path,sha1\na.wav," + "0" * 40 + "\n"))
    assert read_derived(memo, read_checked_text).startswith("path,sha1")
    raw = bytearray(memo.read_bytes())
    raw[12] ^= 0x01  # a digit of the memo: parses, but is not what was written
    memo.write_bytes(bytes(raw))
    with pytest.warns(SslstackWarning, match=r"hashes.csv: damaged.*rebuilt"):
        assert read_derived(memo, read_checked_text) is None
    assert not memo.exists() and list(tmp_path.glob("hashes.csv.damaged-*"))


@pytest.mark.parametrize("name", ["/etc/passwd", "../../outside.json", "a/../../b", ""])
def test_paths_in_a_run_must_stay_inside_its_folder(tmp_path: Path, name: str) -> None:
    from sslstack.errors import DamagedFileError
    from sslstack.workspace import confined

    with pytest.raises(DamagedFileError, match="must stay inside its folder"):
        confined(tmp_path, name)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(DamagedFileError):
        confined(tmp_path, "link/passwd")
    assert confined(tmp_path, "fold0.json") == tmp_path / "fold0.json"
