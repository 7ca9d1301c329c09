"""Progress when nobody watches a terminal: plain lines at a steady interval, an ETA that follows
the amount (audio seconds) rather than the item count."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sslstack import progress as progress_mod
from sslstack.progress import ProgressBar


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", c)
    monkeypatch.setenv("SSLSTACK_PROGRESS_EVERY", "10")
    return c


def _file_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def test_a_pipe_gets_plain_lines_at_the_interval_and_a_last_line(clock: _Clock) -> None:
    console, buf = _file_console()
    with ProgressBar(100, enabled=True, label="extract x", console=console) as bar:
        for _ in range(10):  # 10 items in 5 s: no line yet
            clock.t += 0.5
            bar.advance(1, 2.0)
        assert buf.getvalue() == ""
        clock.t += 5.0  # 10 s since the start
        bar.advance(10, 20.0)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # one at the interval, one at the end
    assert lines[0] == (
        "extract x: 20/100 files (20 %), 4.0 audio-s/s, 0:00:10 elapsed, ETA 0:00:40"
    )
    assert lines[1].startswith("extract x: 20/100 files")


def test_eta_follows_the_amount_when_its_total_is_known(clock: _Clock) -> None:
    """Items in length order: the first half of the items is a small part of the audio."""
    console, _ = _file_console()
    bar = ProgressBar(10, enabled=True, label="x", console=console, total_amount=100.0)
    clock.t += 10.0
    bar.advance(5, 20.0)  # half the items, a fifth of the audio, in 10 s
    assert bar.eta() == pytest.approx(40.0)
    by_count = ProgressBar(10, enabled=True, label="x", console=console)
    by_count._t0 = bar._t0
    by_count.advance(5, 20.0)
    assert by_count.eta() == pytest.approx(10.0)


def test_a_terminal_gets_the_live_bar_not_lines(clock: _Clock) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with ProgressBar(3, enabled=True, label="extract y", console=console) as bar:
        clock.t += 20.0
        bar.advance(3, 3.0)
    out = buf.getvalue()
    assert "extract y" in out and "3/3" in out
    assert "elapsed, ETA" not in out  # the plain line is for pipes only
