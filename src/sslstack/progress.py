"""A rich progress bar on stderr (count, rate, elapsed, ETA) that library code can drive.

The library never imports the CLI: long work takes ``progress=True`` (this bar) or an
``on_progress`` callback; the bar writes to its own stderr console.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ProgressBar:
    """``advance(n, amount)`` from any thread; ``rate`` shows ``amount`` per second."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool,
        label: str,
        unit: str = "files",
        rate_unit: str = "audio-s/s",
        console: Any = None,
    ) -> None:
        self.enabled, self.rate_unit = enabled, rate_unit
        self._lock = threading.Lock()
        self._amount = 0.0
        self._t0 = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True, highlight=False),
            transient=False,
        )
        self._task = self._p.add_task(escape(label), total=total, rate="")

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.stop()

    def advance(self, n: int, amount: float = 0.0) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._amount += amount
            dt = max(time.perf_counter() - self._t0, 1e-9)
            rate = f"{self._amount / dt:.1f} {self.rate_unit}"
            self._p.update(self._task, advance=n, rate=rate)
