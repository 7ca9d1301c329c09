"""The wall-clock budget of one ``fit_head`` call, and the progress events it reports.

``--timeout S`` bounds the whole command, refit included: tuning stops early enough to leave the
estimated refit time, a trial in progress stops at its deadline (boosting rounds check it, and
every fold does), and a stopped trial counts for nothing.

The walk of ``--timeout``: five hops, one :class:`Budget` named ``budget`` from the second on,
absolute ``time.monotonic()`` times throughout (never converted back to relative seconds):

1. ``sslstack fit-head --timeout S`` -> ``FitConfig.timeout`` (``cli/heads.py``);
2. ``fit_head``: ``budget = Budget.of(cfg.timeout)``, held by the ``TrialLoop`` and the
   ``FitContext`` every fit gets (``fit.py``; the refit runs under it as is);
3. ``TrialLoop.trial_budget()``: a trial's ``budget.narrow(end - the refit's estimate,
   rounds_end)``, handed to the trial (``trials.py`` -> ``search.py`` -> ``FitContext.budget``);
4. ``cross_validate``: each fold's ``ctx.budget.share(waves)`` (``cv.py``);
5. the head's round callback asks ``ctx.stop_boosting()``, which reads ``ctx.budget``
   (``heads/xgb.py``, ``catboost.py``, ``lgbm.py``, ``mlp.py``).

Progress reaches a caller (the CLI prints it) through a plain callback that receives
:class:`FitProgress` events: the library never imports the CLI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace


class BudgetExceeded(Exception):
    """A fit was stopped because the command's wall-clock budget ran out."""


@dataclass(frozen=True)
class Budget:
    """The wall-clock budget of one ``fit_head`` call, as absolute ``time.monotonic()`` times.

    One object travels from ``--timeout`` to the boosters' callbacks under the name
    ``budget``; each stage narrows it (:meth:`narrow`, :meth:`share`) and never converts it to
    relative seconds. ``end``: past it a fit fails (:class:`BudgetExceeded`). ``rounds_end``:
    past it a boosted fit stops adding rounds and keeps what it has (a trial's, then one fold's,
    share of the budget). ``None``: unbounded.
    """

    start: float
    seconds: float | None = None  # the --timeout asked for (messages and progress)
    end: float | None = None
    rounds_end: float | None = None

    @classmethod
    def of(cls, seconds: float | None) -> Budget:
        """A budget of ``seconds`` from now (``None`` or ``<= 0``: unbounded)."""
        now = time.monotonic()
        if not seconds or seconds <= 0:
            return cls(now)
        return cls(now, seconds, now + seconds)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left (``inf`` when unbounded)."""
        return math.inf if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        """Past the hard end: a fit running now fails."""
        return past(self.end)

    def rounds_over(self) -> bool:
        """Past the end of adding rounds: a boosted fit keeps the rounds it has."""
        return past(self.rounds_end)

    def narrow(self, end: float | None, rounds_end: float | None = None) -> Budget:
        """This budget ending at ``end`` (never later than its own), its rounds at
        ``rounds_end``."""
        if end is None or (self.end is not None and self.end < end):
            end = self.end
        return replace(self, end=end, rounds_end=rounds_end)

    def share(self, waves: int) -> Budget:
        """One fold's share of the rounds' time left, when ``waves`` rounds of folds remain: a
        fold that ended early leaves more to the ones after it."""
        if self.rounds_end is None:
            return self
        now = time.monotonic()
        return replace(self, rounds_end=now + max(0.0, self.rounds_end - now) / max(1, waves))


UNBOUNDED = Budget(0.0)


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
