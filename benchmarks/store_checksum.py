"""What checksummed parts cost: fletcher32 + v110 metadata against the old unchecksummed parts.

One part of ``--items`` items x ``--layers`` layers x ``--dim`` fp16 (one pooling), written and
read the way sslstack does: one layer of every item (what a head reads), a full read of every
chunk through HDF5 (which checks fletcher32 on the way), the CRC-32 of the file (what every
``extract`` checks first, ``Store.verify``), and the write. Page cache warm; the median of
``--repeat`` runs.

    python benchmarks/store_checksum.py --items 3000 --layers 13 --dim 768
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from sslstack.cache.parts import LIBVER, _read_all, file_crc32


def _write(path: Path, x: np.ndarray, checksum: bool) -> None:
    rows = max(1, min(x.shape[0], (1 << 20) // (x.shape[2] * 2)))
    kw = {"fletcher32": True} if checksum else {}
    with h5py.File(path, "w", libver=LIBVER if checksum else "earliest") as f:
        f.create_dataset("clip/mean", data=x, chunks=(rows, 1, x.shape[2]), **kw)


def _read_layer(path: Path, col: int) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["clip/mean"][:, col, :]


def _read_all_of(path: Path) -> None:
    with h5py.File(path, "r") as f:
        _read_all(f)


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((args.items, args.layers, args.dim))
    x = x.astype(np.float16)
    mb = x.nbytes / 2**20
    print(f"{args.items} items x {args.layers} layers x {args.dim} fp16 = {mb:.1f} MiB")
    print(
        f"{'':12} {'write s':>8} {'1 layer s':>10} {'all chunks s':>13} {'crc32 s':>8} "
        f"{'size MiB':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for checksum in (False, True):
            path = Path(tmp) / f"p{int(checksum)}.h5"
            w = _median(lambda c=checksum, p=path: _write(p, x, c), args.repeat)
            r = _median(lambda p=path: _read_layer(p, args.layers // 2), args.repeat)
            v = _median(lambda p=path: _read_all_of(p), args.repeat)
            c = _median(lambda p=path: file_crc32(p), args.repeat)
            name = "fletcher32" if checksum else "plain"
            size = path.stat().st_size / 2**20
            print(f"{name:12} {w:8.3f} {r:10.4f} {v:13.3f} {c:8.3f} {size:9.2f}")


if __name__ == "__main__":
    main()
