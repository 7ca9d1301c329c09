"""The one budget of ``fit_head``: absolute monotonic times from ``--timeout`` to each fold."""

from __future__ import annotations

import math
import time

import pytest

from sslstack.classify.budget import Budget
from sslstack.classify.trials import MIN_TRIALS, REFIT_MARGIN, SOFT_MARGIN, BestTrial, TrialLoop


def test_a_budget_is_absolute_and_unbounded_without_a_timeout() -> None:
    for seconds in (None, 0, -1):
        b = Budget.of(seconds)
        assert b.end is None and b.seconds is None and b.left() == math.inf
        assert not b.expired() and not b.rounds_over()
    t0 = time.monotonic()
    b = Budget.of(10.0)
    assert b.seconds == 10.0 and t0 + 10.0 <= b.end <= time.monotonic() + 10.0
    assert 9.0 < b.left() <= 10.0


def test_narrowing_never_extends_and_folds_share_the_rounds() -> None:
    now = time.monotonic()
    b = Budget(now, 10.0, now + 10.0)
    assert b.narrow(now + 20.0).end == now + 10.0  # never later than its own end
    assert b.narrow(None).end == now + 10.0
    trial = b.narrow(now + 5.0, now + 4.0)
    assert trial.end == now + 5.0 and trial.rounds_end == now + 4.0 and trial.start == now
    fold = trial.share(2)  # two waves of folds left: this one gets half of what is left
    assert fold.end == trial.end
    assert fold.rounds_end is not None
    assert fold.rounds_end == pytest.approx(now + 2.0, abs=0.05)
    assert b.share(3) is b  # no end of rounds: nothing to share
    gone = Budget(now - 2, 1.0, now - 1, now - 1)
    assert gone.expired() and gone.rounds_over()


def test_a_trials_budget_leaves_the_refit_and_shares_the_rounds() -> None:
    loop = TrialLoop(Budget.of(100.0), folds=3, trials_wanted=10, maximize=True, needs_refit=True)
    end = loop.budget.end
    assert end is not None
    first = loop.trial_budget()
    assert first.end == end  # no trial yet: no refit estimate
    assert first.rounds_end is not None
    # the first trials share the rest so that MIN_TRIALS run
    assert first.rounds_end - time.monotonic() == pytest.approx(
        SOFT_MARGIN * 100.0 / MIN_TRIALS, abs=0.5
    )
    loop.durations.append(10.0)
    loop.best = BestTrial(0, 0.5, None, seconds=10.0)  # type: ignore[arg-type]
    later = loop.trial_budget()
    assert later.end == pytest.approx(end - REFIT_MARGIN * 10.0)
    # a head that does not boost (logistic) gets no end of rounds; neither does no timeout
    assert (
        TrialLoop(Budget.of(100.0), 3, 10, True, needs_refit=False).trial_budget().rounds_end
        is None
    )
    assert TrialLoop(Budget.of(None), 3, 10, True, needs_refit=True).trial_budget().end is None
