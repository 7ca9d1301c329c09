"""Decoding: manifest rows -> waveforms at the encoder's rate, produced ahead by background threads.

Whole clips are decoded by a pool of ``workers`` threads a few files ahead. Windows of long
recordings are streamed by one thread through a bounded queue, so a 2-hour recording never sits
in memory. Either way the consumer sees one ordered stream of events.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import iter_windows, load_audio
from ..errors import AudioError
from ..manifest import Manifest
from .config import ExtractConfig


@dataclass
class Unit:
    """One waveform sent to the encoder: a whole clip or one window of a clip."""

    row: int
    start: float | None
    wave: np.ndarray


# ("unit", row, Unit) | ("done", row, None): every unit of the row was sent | ("fail", row, error)
Event = tuple[str, int, Any]


def _decode_error(path: str, e: Exception) -> AudioError:
    if isinstance(e, AudioError):
        return e
    return AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e})")


def decode_events(
    manifest: Manifest, rows: Sequence[int], cfg: ExtractConfig, sample_rate: int
) -> Iterator[Event]:
    """Decoded units of the rows, in order (``cfg.workers`` 0: decoded in the calling thread)."""
    paths = manifest.frame["path"].tolist()
    if cfg.window is not None:
        _fixed_mmap_threshold()
        yield from prefetch(_window_events(paths, rows, cfg, sample_rate), maxsize=64)
        return

    def load(row: int) -> Unit | AudioError:
        try:
            wave = load_audio(paths[row], sample_rate, max_seconds=cfg.max_seconds, crop=cfg.crop)
            return Unit(row, None, wave)
        except Exception as e:  # a decoder crash on a corrupt file must name the file
            return _decode_error(paths[row], e)

    for row, got in _loaded(load, rows, cfg.workers):
        if isinstance(got, AudioError):
            yield ("fail", row, got)
        else:
            yield ("unit", row, got)
            yield ("done", row, None)


def _loaded(load: Any, rows: Sequence[int], workers: int) -> Iterator[tuple[int, Any]]:
    """``load(row)`` for every row, in order, ``workers`` threads a few rows ahead."""
    if workers <= 0:
        for row in rows:
            yield row, load(row)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="sslstack-decode") as pool:
        it = iter(rows)
        pending = [(r, pool.submit(load, r)) for _, r in zip(range(workers * 4), it, strict=False)]
        while pending:
            row, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield row, fut.result()


def _fixed_mmap_threshold() -> None:
    """Stop glibc from raising its mmap threshold. Windows are allocated by one thread and freed
    by another; with the dynamic threshold those buffers land in heap arenas that fragment, and
    peak memory grows with the recording's length (measured: 653 MiB for a 2-hour file against
    463 MiB with a fixed threshold, see docs/benchmarks.md)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _window_events(
    paths: list[str], rows: Sequence[int], cfg: ExtractConfig, sample_rate: int
) -> Iterator[Event]:
    assert cfg.window is not None and cfg.hop is not None
    for row in rows:
        try:
            for start, wave in iter_windows(paths[row], sample_rate, cfg.window, cfg.hop):
                yield ("unit", row, Unit(row, start, wave))
        except Exception as e:
            yield ("fail", row, _decode_error(paths[row], e))
            continue
        yield ("done", row, None)


def prefetch(items: Iterator[Any], maxsize: int, name: str = "sslstack-windows") -> Iterator[Any]:
    """Run ``items`` in a background thread, at most ``maxsize`` items ahead.

    An exception in the producer is raised in the consumer; when the consumer stops early (an
    exception, Ctrl-C, or simply not reading on), the producer stops at its next item.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    end = object()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put(x):
                    return
        except BaseException as e:  # surfaced in the consumer
            put(_Raised(e))
            return
        finally:  # a consumer that stopped early: close the source (its decode threads) here
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(end)

    t = threading.Thread(target=produce, name=name, daemon=True)
    t.start()
    try:
        while (x := q.get()) is not end:
            if isinstance(x, _Raised):
                raise x.error
            yield x
    finally:
        stop.set()


@dataclass
class _Raised:
    error: BaseException
