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
