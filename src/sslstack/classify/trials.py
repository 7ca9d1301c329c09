"""The trial loop of ``fit_head`` under a wall-clock budget, with progress events.

:class:`TrialLoop` runs one Optuna objective per trial and keeps, in memory, the best finished
trial of this process with its fold models and out-of-fold predictions. That lets the command
end within its budget: tuning stops early enough to leave the estimated refit time, a trial in
progress stops at its deadline (and counts for nothing), and when the refit cannot fit in what
is left the run keeps the best trial's own fold models, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from .budget import Budget, BudgetExceeded, FitProgress, ProgressFn, eta
from .cv import CVOutcome

REFIT_MARGIN = 1.3  # a refit on the whole training part costs about this much of its trial
# under --timeout, a boosted trial stops adding rounds at this share of the time it has left
# (the rest: data set-up and predictions). A trial cut short this way has not converged, and
# more rounds then do more for it than a refit on 15 % more rows: the first trial may take the
# whole budget (the run then keeps its fold models); a later one leaves the best trial's refit
SOFT_MARGIN = 0.9
# under --timeout the first trials share what is left so that at least this many run: one trial
# taking the whole budget left boosted heads untuned (1 trial in 300 s on 50 classes, 1024-d)
MIN_TRIALS = 4


@dataclass
class BestTrial:
    number: int
    value: float
    outcome: CVOutcome
    seconds: float


@dataclass
class TrialLoop:
    """State of one ``fit_head`` call's tuning: durations, the best trial, the budget."""

    budget: Budget
    folds: int
    trials_wanted: int
    maximize: bool
    needs_refit: bool  # boosted heads refit the best trial; logistic trials are final as is
    progress: ProgressFn | None = None
    durations: list[float] = field(default_factory=list)
    best: BestTrial | None = None
    stopped: int | None = None  # fold at which a trial was stopped by the budget
    running: int = 0  # trials started by this call
    folds_done: int = 0  # folds finished by the trial in progress

    # ---------------------------------------------------------------- estimates
    def trial_s(self) -> float | None:
        return float(np.median(self.durations)) if self.durations else None

    def refit_s(self) -> float | None:
        """Estimated seconds of the final refit (0 when the best trial is final as is)."""
        if self.best is None:
            return self.trial_s()
        return REFIT_MARGIN * self.best.seconds if self.needs_refit else 0.0

    def trial_budget(self) -> Budget:
        """The budget of a trial starting now: the command's, ending early enough to leave the
        refit's estimated time, and (boosted heads under a --timeout) an end of rounds at this
        trial's share of what is left: the first trials share it so that ``MIN_TRIALS`` run."""
        end = self.budget.end
        if end is None:
            return self.budget
        if self.best is not None:
            end -= self.refit_s() or 0.0
        rounds_end = None
        if self.needs_refit:
            now = time.monotonic()
            ahead = max(1, MIN_TRIALS - len(self.durations))
            rounds_end = now + max(0.0, SOFT_MARGIN * (end - now) / ahead)
        return self.budget.narrow(end, rounds_end)

    def emit(self, **kw: Any) -> None:
        if self.progress is None:
            return
        left = max(0, self.trials_wanted - self.running)
        kw.setdefault("eta_s", eta(self.budget, left, self.trial_s(), self.refit_s()))
        self.progress(
            FitProgress(
                folds=self.folds,
                best=self.best.value if self.best else None,
                elapsed_s=self.budget.elapsed(),
                budget_s=self.budget.seconds,
                **kw,
            )
        )

    # ---------------------------------------------------------------- the loop
    def objective(
        self, run: Callable[[optuna.Trial, Budget], CVOutcome]
    ) -> Callable[[optuna.Trial], float]:
        """Wrap ``run(trial, budget) -> CVOutcome`` into an Optuna objective."""

        def objective(trial: optuna.Trial) -> float:
            self.running += 1
            self.folds_done = 0
            t0 = time.monotonic()
            try:
                out = run(trial, self.trial_budget())
            except BudgetExceeded:
                self.stopped = self.folds_done
                trial.study.stop()
                self.emit(stage="trial", trial=trial.number, fold=None, score=None,
                          state="stopped")  # fmt: skip
                raise
            except optuna.TrialPruned:
                self.durations.append(time.monotonic() - t0)
                raise
            seconds = time.monotonic() - t0
            self.durations.append(seconds)
            value = out.mean
            if np.isfinite(value) and (
                self.best is None
                or (value > self.best.value if self.maximize else value < self.best.value)
            ):
                self.best = BestTrial(trial.number, value, out, seconds)
            return value

        return objective

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: report the trial, stop the study when the budget says so."""
        state = trial.state.name.lower()
        if state == "fail":
            return
        score = trial.value
        if state == "pruned" and trial.intermediate_values:
            score = trial.intermediate_values[max(trial.intermediate_values)]
        self.emit(stage="trial", trial=trial.number, fold=None, score=score, state=state)
        # a trial started now gets the time left less the refit's; when none is left, stop
        if self.budget.left() <= (self.refit_s() or 0.0):
            study.stop()

    def fold_done(self, trial: optuna.Trial, fold: int, running: float) -> None:
        self.folds_done = fold + 1
        self.emit(stage="fold", trial=trial.number, fold=fold, score=running)

    def keeps_best(self, best_number: int) -> bool:
        """Whether the study's best trial is this process's, with its models in memory."""
        return self.best is not None and self.best.number == best_number

    def refit_fits(self) -> bool:
        """Whether the refit fits in what is left of the budget: its estimate less the margin
        that tuning reserved (tuning stops when the reserve is reached, so a test against the
        whole reserve refused the refit tuning had stopped for)."""
        return (self.refit_s() or 0.0) / REFIT_MARGIN <= self.budget.left()
