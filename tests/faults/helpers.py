"""Shared pieces of the fault suite: damaging files, running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "200", **extra}


def cli(*args: str, cwd: Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    """``python -m sslstack ARGS`` in a subprocess (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "sslstack", *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=cwd,
        **kw,  # type: ignore[arg-type]
    )


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command; fails on tracebacks or several lines."""
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def parts_of(store_path: Path) -> list[Path]:
    return sorted((store_path / "parts").glob("part-*.h5"))


def data_offset(part: Path, dataset: str) -> tuple[int, int]:
    """Byte offset and size of the first chunk of ``dataset`` in the file."""
    with h5py.File(part, "r") as f:
        ds = f[dataset]
        info = ds.id.get_chunk_info(0)
        return int(info.byte_offset), int(info.size)


def flip_bits(part: Path, dataset: str, n: int = 64, seed: int = 0) -> None:
    """Flip the low bit of ``n`` bytes inside the first chunk of ``dataset`` (silent rot)."""
    off, size = data_offset(part, dataset)
    rng = np.random.default_rng(seed)
    raw = bytearray(part.read_bytes())
    for pos in rng.choice(size - 4, size=min(n, size - 4), replace=False):
        raw[off + int(pos)] ^= 0x01
    part.write_bytes(bytes(raw))


def truncate(path: Path, keep: float = 0.6) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def damage_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:8] = b"\0" * 8  # the HDF5 signature
    path.write_bytes(bytes(raw))
