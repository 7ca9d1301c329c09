"""Decoding: manifest rows -> the encoder's input arrays, produced ahead by background threads.

What an item is and how it is read belongs to its source (:mod:`sslstack.sources`); this module
only schedules. Whole items are decoded by a pool of ``workers`` threads a few items ahead.
Items longer than the encoder's chunk, and windows of long recordings, are streamed by one
thread through a bounded queue, so a 10-hour recording never sits in memory. Either way the
consumer sees one ordered stream of events; the chunks of one item (or window) are consecutive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AudioError
from ..sources import Settings, Source, Stream

STREAM_DEPTH = 4  # chunks the streaming thread decodes ahead of the batcher


@dataclass
class Unit:
    """One array sent to the encoder: a whole item, one window, or one chunk of either."""

    row: int
    start: float | None  # the window's start (None: not windowed); chunks share their window's
    wave: np.ndarray


# ("unit", row, Unit) | ("done", row, None): every unit of the row was sent | ("fail", row, error)
Event = tuple[str, int, Any]


def _decode_error(path: str, e: Exception, kind: str) -> AudioError:
    if isinstance(e, AudioError):
        return e
    return AudioError(f"{path}: cannot decode {kind} ({type(e).__name__}: {e})")


@dataclass(frozen=True)
class Reading:
    """How a shard's items are read: by which source, at which rate, cut how."""

    source: Source
    rate: int
    settings: Settings
    stream: Stream | None
    workers: int = 2


def decode_events(
    reading: Reading, paths: Sequence[str], rows: Sequence[int], extents: dict[int, float]
) -> Iterator[Event]:
    """Decoded units of the rows, in order (``workers`` 0: decoded in the calling thread).

    ``paths`` and ``extents`` are indexed by row; a row whose extent holds more samples than
    one chunk is streamed in chunks, the others are loaded whole.
    """
    if reading.settings.windowed:
        _fixed_mmap_threshold()
        depth = _window_depth(reading)
        yield from prefetch(_window_events(reading, paths, rows), maxsize=depth)
        return
    size = reading.stream.size if reading.stream else None
    long = [r for r in rows if size is not None and extents[r] * reading.rate > size]
    streamed = set(long)
    whole = [r for r in rows if r not in streamed]

    def load(row: int) -> Unit | AudioError:
        try:
            return Unit(row, None, reading.source.load(paths[row], reading.rate, reading.settings))
        except Exception as e:  # a decoder crash on a corrupt file must name the file
            return _decode_error(paths[row], e, reading.source.kind)

    for row, got in _loaded(load, whole, reading.workers):
        if isinstance(got, AudioError):
            yield ("fail", row, got)
        else:
            yield ("unit", row, got)
            yield ("done", row, None)
    if long:
        _fixed_mmap_threshold()
        yield from prefetch(_chunk_events(reading, paths, long), maxsize=STREAM_DEPTH)


def _chunk_events(reading: Reading, paths: Sequence[str], rows: Sequence[int]) -> Iterator[Event]:
    assert reading.stream is not None
    for row in rows:
        try:
            for chunk in reading.source.chunks(
                paths[row], reading.rate, reading.settings, reading.stream
            ):
                yield ("unit", row, Unit(row, None, chunk))
        except Exception as e:
            yield ("fail", row, _decode_error(paths[row], e, reading.source.kind))
            continue
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


def _window_depth(reading: Reading) -> int:
    """Windows decoded ahead: 64 short ones, fewer long ones (about four chunks' worth)."""
    if reading.settings.window is None:  # image views (--tta): small, all of one size
        return 64
    win = max(int(reading.settings.window * reading.rate), 1)
    size = reading.stream.size if reading.stream else win
    return max(2, min(64, 4 * size // win))


def _window_events(reading: Reading, paths: Sequence[str], rows: Sequence[int]) -> Iterator[Event]:
    stream = reading.stream
    for row in rows:
        try:
            for start, wave in reading.source.windows(paths[row], reading.rate, reading.settings):
                if stream is None or len(wave) <= stream.size:
                    yield ("unit", row, Unit(row, start, wave))
                    continue
                for s in stream.starts(len(wave)):  # a window longer than a chunk: in chunks
                    yield ("unit", row, Unit(row, start, wave[s : s + stream.size]))
        except Exception as e:
            yield ("fail", row, _decode_error(paths[row], e, reading.source.kind))
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
