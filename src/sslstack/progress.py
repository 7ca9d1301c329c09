"""Progress of long work (count, rate, elapsed, ETA) on stderr, that library code can drive.

The library never imports the CLI: long work takes ``progress=True`` (this bar) or an
``on_progress`` callback. On a terminal the bar is a rich progress bar; when stderr is a file or a
pipe (a log, CI, ``nohup``) a live bar prints nothing until the end, so the same numbers go out as
a plain line at a steady interval instead (``SSLSTACK_PROGRESS_EVERY`` seconds, default 30).

The ETA comes from the *amount* (audio seconds, pixels) when its total is known, because items
are processed in length order and a count-based ETA jumps; it is the remaining amount over the
rate of the whole run so far, not of the last few seconds.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def _every() -> float:
    try:
        return max(0.5, float(os.environ.get("SSLSTACK_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressBar:
    """``advance(n, amount)`` from any thread; ``rate`` shows ``amount`` per second.

    Args:
        total: items to do.
        enabled: draw anything at all.
        label: what is being done (shown first).
        unit: what an item is called.
        rate_unit: what the amount per second is called.
        console: the rich console to draw on (default: stderr).
        total_amount: the amount (e.g. audio seconds) all items add up to, when known: the ETA
            then follows the amount instead of the item count.
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool,
        label: str,
        unit: str = "files",
        rate_unit: str = "audio-s/s",
        console: Any = None,
        total_amount: float | None = None,
    ) -> None:
        self.enabled, self.rate_unit, self.unit = enabled, rate_unit, unit
        self.total, self.total_amount, self.label = total, total_amount, label
        self._lock = threading.Lock()
        self._amount = 0.0
        self._done = 0
        self._t0 = time.perf_counter()
        self._last_line = self._t0
        self._plain = False
        if not enabled:
            return
        from rich.console import Console

        self._console = console or Console(stderr=True, highlight=False)
        self._plain = not self._console.is_terminal
        if self._plain:
            return
        self._p = self._rich_bar(label)

    def _rich_bar(self, label: str) -> Any:
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=self._console,
            transient=False,
        )
        self._task = p.add_task(escape(label), total=self.total, rate="", eta="-:--:--")
        return p

    def __enter__(self) -> ProgressBar:
        if self.enabled and not self._plain:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self._plain:
            if self._done:
                self._print_line()
        else:
            self._p.stop()

    def eta(self) -> float | None:
        """Seconds left at the whole run's rate so far (None before anything is done)."""
        dt = time.perf_counter() - self._t0
        if self.total_amount and self._amount > 0:
            return max(self.total_amount - self._amount, 0.0) * dt / self._amount
        if self._done > 0:
            return max(self.total - self._done, 0) * dt / self._done
        return None

    def line(self) -> str:
        """The plain progress line: items, rate, elapsed, ETA."""
        dt = max(time.perf_counter() - self._t0, 1e-9)
        eta = self.eta()
        pct = 100.0 * self._done / self.total if self.total else 100.0
        return (
            f"{self.label}: {self._done}/{self.total} {self.unit} ({pct:.0f} %), "
            f"{self._amount / dt:.1f} {self.rate_unit}, {_clock(dt)} elapsed, "
            f"ETA {_clock(eta) if eta is not None else '-:--:--'}"
        )

    def _print_line(self) -> None:
        self._console.print(self.line(), soft_wrap=True, markup=False, highlight=False)
        self._last_line = time.perf_counter()

    def advance(self, n: int, amount: float = 0.0) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._amount += amount
            self._done += n
            if self._plain:
                if time.perf_counter() - self._last_line >= _every():
                    self._print_line()
                return
            dt = max(time.perf_counter() - self._t0, 1e-9)
            rate = f"{self._amount / dt:.1f} {self.rate_unit}"
            eta = self.eta()
            self._p.update(
                self._task, advance=n, rate=rate, eta=_clock(eta) if eta is not None else "-"
            )
