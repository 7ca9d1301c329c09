"""The Ray executor's progress: the write tasks add what they wrote to a small actor, and a
thread of the driver polls it and moves the progress bar (items, rate and ETA)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    from ..worker import OnBatch, ShardReport


class Progress:
    """What the write tasks have written (an actor the driver polls)."""

    def __init__(self) -> None:
        self.counts = (0, 0, 0.0)  # items computed, items failed, extent

    def add(self, computed: int, failed: int, extent: float) -> None:
        c, f, e = self.counts
        self.counts = (c + computed, f + failed, e + extent)

    def get(self) -> tuple[int, int, float]:
        return self.counts


class Poller:
    """A thread that adds the progress actor's counts to the report and calls ``on_batch``
    (which moves the progress bar) with what is new."""

    def __init__(self, progress: Any, report: ShardReport, on_batch: OnBatch | None) -> None:
        self.progress, self.report, self.on_batch = progress, report, on_batch
        self.computed, self.failed, self.extent = 0, 0, 0.0
        self.first_at: float | None = None  # time.perf_counter() of the first progress seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sslstack-ray-progress", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self._poll(timeout=30)  # the actor's first answer waits for its process to start

    def _poll(self, timeout: float) -> None:
        try:
            computed, failed, extent = ray.get(self.progress.get.remote(), timeout=timeout)
        except Exception:  # slow to start, or the cluster is going away
            return
        if computed + failed <= self.computed + self.failed:
            return
        self.first_at = self.first_at or time.perf_counter()
        new, extent_new = computed + failed - self.computed - self.failed, extent - self.extent
        self.report.computed += computed - self.computed
        self.report.extent += extent_new
        self.computed, self.failed, self.extent = computed, failed, extent
        if self.on_batch is not None:
            self.on_batch(new, extent_new)

    def close(self) -> None:
        """Stop polling, after one last look (the bar ends where the run ended)."""
        self.stop.set()
        self.thread.join()
        self._poll(timeout=5)
