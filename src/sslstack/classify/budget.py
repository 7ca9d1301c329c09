"""The wall-clock budget of one ``fit_head`` call, and the progress events it reports.

``--timeout S`` bounds the whole command, refit included: tuning stops early enough to leave the
estimated refit time, a trial in progress stops at its deadline (boosting rounds check it, and
every fold does), and a stopped trial counts for nothing. Progress reaches a caller (the CLI
prints it) through a plain callback that receives :class:`FitProgress` events: the library never
imports the CLI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class BudgetExceeded(Exception):
    """A fit was stopped because the command's wall-clock budget ran out."""


@dataclass
class Budget:
    """A deadline on ``time.monotonic()`` (``None``: unbounded)."""

    start: float
    seconds: float | None = None

    @classmethod
    def of(cls, seconds: float | None) -> Budget:
        """A budget of ``seconds`` from now (``None`` or ``<= 0``: unbounded)."""
        return cls(time.monotonic(), seconds if seconds and seconds > 0 else None)

    @property
    def deadline(self) -> float | None:
        return None if self.seconds is None else self.start + self.seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left (``inf`` when unbounded)."""
        d = self.deadline
        return math.inf if d is None else d - time.monotonic()

    def check(self, deadline: float | None = None) -> None:
        """Raise :class:`BudgetExceeded` past ``deadline`` (default: the budget's own)."""
        d = self.deadline if deadline is None else deadline
        if d is not None and time.monotonic() > d:
            raise BudgetExceeded(f"the {self.seconds:g} s budget ran out")


def past(deadline: float | None) -> bool:
    """Whether ``deadline`` (a ``time.monotonic()`` value, or ``None``) has passed."""
    return deadline is not None and time.monotonic() > deadline


@dataclass(frozen=True)
class FitProgress:
    """One progress event of ``fit_head``: after each fold of a trial, after each trial, or of
    the final refit (``trial`` is ``None`` there).

    ``score`` is the running mean of the fold scores of this trial; ``best`` the best finished
    trial's score so far; ``eta_s`` the estimated seconds until the command ends (the budget's end
    when that comes first), ``None`` before anything can be estimated.
    """

    stage: str  # fold | trial | refit | note
    trial: int | None
    fold: int | None
    folds: int
    score: float | None
    best: float | None
    elapsed_s: float
    budget_s: float | None
    eta_s: float | None
    state: str = ""  # a trial's end: complete | pruned | stopped (budget) | failed
    message: str = ""


ProgressFn = Callable[[FitProgress], None]


def eta(
    budget: Budget, trials_left: int, trial_s: float | None, refit_s: float | None
) -> float | None:
    """Seconds until the command should end: the trials left and the refit, capped by the
    budget."""
    if trial_s is None:
        return None if budget.seconds is None else max(0.0, budget.left())
    guess = trials_left * trial_s + (refit_s if refit_s is not None else trial_s)
    return max(0.0, min(guess, budget.left()))
