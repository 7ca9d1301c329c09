"""The extraction pipeline: host work, device work and store writes overlap.

Three stages, joined by bounded queues (so memory stays bounded and a slow stage holds the
others back)::

    collate thread:  decoded units -> batches -> encoder.prepare (normalize, pad, pin)
    device loop:     encoder.forward (copy non-blocking, run, pool; results come back async)
    writer thread:   wait for the pooled vectors -> sink (assemble items, write a store part)

The device loop is the calling thread, so Ctrl-C lands there. Whatever ends the run (Ctrl-C, an
error in any stage), the writer first writes every batch the device has finished, then the
error is raised: nothing computed is lost, and no part is written twice. ``threaded=False``
runs the same steps one after another in the calling thread (``--workers 0``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .base import Encoder
from .batching import Batch, BatchBudget
from .decode import prefetch

Sink = Callable[[Batch, list[dict[str, np.ndarray]]], None]
DEPTH = 2  # batches each queue holds ahead of the stage after it


def run_pipeline(
    encoder: Encoder,
    stream: Iterator[Batch],
    pools: Sequence[str],
    sink: Sink,
    budget: BatchBudget,
    *,
    threaded: bool = True,
    depth: int = DEPTH,
) -> float:
    """Encode every batch of ``stream`` and hand it with its vectors to ``sink``, in order.

    Returns:
        Seconds the device loop spent in ``encoder.forward``.
    """
    if not threaded:
        return _serial(encoder, stream, pools, sink, budget)
    writer = _Writer(sink, depth)
    forward_s = 0.0
    try:
        for batch in prefetch(_prepared(encoder, stream), maxsize=depth, name="sslstack-collate"):
            writer.check()
            t0 = time.perf_counter()
            pooled = _forward(encoder, batch, pools, budget)
            forward_s += time.perf_counter() - t0
            writer.put(batch, pooled)
        writer.close()
    except BaseException:
        writer.close(draining=True)
        raise
    return forward_s


def _serial(
    encoder: Encoder, stream: Iterator[Batch], pools: Sequence[str], sink: Sink, budget: BatchBudget
) -> float:
    forward_s = 0.0
    for batch in stream:
        batch.prepared = encoder.prepare([u.wave for u in batch.units]) if batch.units else None
        t0 = time.perf_counter()
        pooled = _forward(encoder, batch, pools, budget)
        forward_s += time.perf_counter() - t0
        sink(batch, pooled.get() if pooled is not None else [])
    return forward_s


def _prepared(encoder: Encoder, stream: Iterator[Batch]) -> Iterator[Batch]:
    for batch in stream:
        if batch.units:
            batch.prepared = encoder.prepare([u.wave for u in batch.units])
        yield batch


def _forward(encoder: Encoder, batch: Batch, pools: Sequence[str], budget: BatchBudget) -> Any:
    if not batch.units:
        return None
    before = encoder.oom_splits
    pooled = encoder.forward(batch.prepared, pools)
    batch.prepared = None  # the host copy is no longer needed
    if encoder.oom_splits > before:  # this batch had to be split: keep later
        budget.halve()  # batches at a size that fits
    return pooled


class _Writer:
    """The writer stage: a thread that takes (batch, pooled) in order and calls the sink."""

    _END = object()

    def __init__(self, sink: Sink, depth: int) -> None:
        self.sink = sink
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="sslstack-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (job := self.q.get()) is not self._END:
            if self.error is not None:
                continue  # after a failure: drain the queue, write nothing more
            batch, pooled = job
            try:
                self.sink(batch, pooled.get() if pooled is not None else [])
            except BaseException as e:
                self.error = e

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, batch: Batch, pooled: Any) -> None:
        while True:  # block while the writer is behind, but never past its failure
            self.check()
            try:
                self.q.put((batch, pooled), timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, draining: bool = False) -> None:
        """Wait for every queued batch to be written; raise the writer's error (unless
        ``draining``: another error is on its way already)."""
        while self.thread.is_alive():
            try:
                self.q.put(self._END, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join()
        if not draining:
            self.check()
