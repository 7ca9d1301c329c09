"""Optuna studies: sampler, pruner, and the trial loop (their storage: :mod:`.journal`).

- TPE sampler, seeded; a median pruner fed with the running mean of the fold scores after each
  fold (never per boosting round, which would mix folds).
- ``trials`` counts finished trials (complete or pruned) of the study: rerunning with a larger
  number continues the study; several workers stop together when the study reaches it.
- A worker killed mid-trial leaves a RUNNING trial: on the next start, RUNNING trials of this
  machine whose process is gone are marked failed (journal storage); the RDB storage uses
  Optuna's heartbeat for the same. A killed trial whose parameters were enqueued (the warm
  start) is enqueued again. With the journal, a trial is created (or taken from the queue)
  together with its worker's name in one record, so no failure (a full disk between two
  records) leaves a RUNNING trial that names no worker and so is never failed.
- Exactly ``trials``: with the journal, a worker claims a trial under a lock beside the
  journal only while the finished and running trials are fewer than asked; a worker that finds
  the others running the last ones waits for them (and takes over a trial whose worker died),
  so several processes on one study end with exactly the trials asked for and see the same
  best trial.
- Resuming reproduces: the sampler's random state at each trial depends only on the seed and
  the number of trials finished or running, so a study killed and resumed reaches the same
  trials as one that ran through (on one worker; several workers interleave differently).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError, RunError
from ..workspace import Workspace, pid_alive
from .journal import (
    FINISHED,
    RUN,
    WORKER_ATTR,
    ClaimingJournal,
    StudyFull,
    journal_errors,
    open_storage,
    storage_label,
    worker_id,
)

__all__ = [
    "FINISHED",
    "fail_dead_trials",
    "finished_trials",
    "open_storage",
    "open_study",
    "optimize",
    "report_fold",
    "requeue_killed",
    "storage_label",
]


def fail_dead_trials(study: optuna.Study, *, own: bool = False) -> int:
    """Mark RUNNING trials whose worker (on this machine) is gone as FAIL; return how many.

    ``own``: this process's RUNNING trials count as dead too (called between trials, when this
    process runs none: such a trial is a record a torn journal lost the end of).
    """
    host, me = socket.gethostname(), os.getpid()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get(WORKER_ATTR, ""))
        h, _, pid = worker.rpartition(":")
        if h != host or not pid.isdigit():
            continue
        if (own and int(pid) == me) or (int(pid) != me and not pid_alive(int(pid))):
            try:
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                n += 1
            except Exception:  # noqa: BLE001 - another worker got there first
                pass
    return n


def open_study(
    ws: Workspace,
    study_name: str,
    direction: str,
    *,
    storage: str | None = None,
    seed: int = 0,
    n_startup: int = 5,
    pruner: str = "median",
) -> optuna.Study:
    """Create or load a study, with a seeded TPE sampler and a pruner over folds
    (:func:`make_pruner`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(ws, study_name, storage)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=store,
            direction=direction,  # type: ignore[arg-type]
            pruner=make_pruner(pruner, n_startup),
            load_if_exists=True,
        )
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:  # not replayable
        where = storage_label(ws, study_name, storage)
        raise RunError(
            f"{where}: a record of the study is damaged ({e!r}); move the journal away to start "
            "the study afresh (the runs already saved are kept)"
        ) from None
    if study.direction.name.lower() != direction:
        raise RunError(
            f"study {study_name} optimizes in direction {study.direction.name.lower()}, "
            f"not {direction}; use another --study name"
        )
    fail_dead_trials(study)
    requeue_killed(study)
    study.sampler = ResumableTPESampler(
        seed=seed, n_startup_trials=min(10, max(n_startup, 3)), multivariate=True
    )
    return study


PRUNERS = ("median", "sha")


def make_pruner(name: str, n_startup: int = 5) -> optuna.pruners.BasePruner:
    """The pruner fed with the running mean of the fold scores after each fold.

    ``median``: a trial below the median of the earlier trials at the same fold, after
    ``n_startup`` trials. ``sha``: successive halving over folds (rungs after 2 and 4 folds, a
    third promoted), which prunes from the second trial on: while fewer than three trials have
    reached a rung, only one at least as good as the best there goes on. Under ``--timeout`` a
    boosted head gets a handful of trials, all of them within a median pruner's start-up.
    Both decide from the running mean of two folds or more: one fold's score is noisy (with
    grouped folds it may be one speaker).

    Raises:
        ConfigError: an unknown name.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=1)
    if name == "sha":
        # step k is fold k (0-based): rung 0 at step 1, rung 1 at step 3
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=0
        )
    raise ConfigError(f"pruner {name!r}: use {' or '.join(PRUNERS)}")


class ResumableTPESampler(optuna.samplers.TPESampler):
    """TPE whose random state at each trial is a function of the seed and the number of
    trials finished or running, not of the process's history.

    A plain seeded sampler restarts its random stream in every process, so a study killed
    and resumed samples other trials than one run straight through. Here trial ``k`` of a
    resumed study draws from the same stream, and sees the same finished trials, as trial
    ``k`` of an uninterrupted one, so it gets the same parameters. Failed trials (killed) are
    not counted, so the trial that replaces a killed one repeats it.
    """

    def __init__(self, *, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = (*FINISHED, TrialState.RUNNING)
        k = sum(
            1 for t in study.get_trials(deepcopy=False, states=states) if t.number != trial.number
        )
        state = (self._base_seed * 1_000_003 + k) % 2**32
        self._rng.rng.seed(state)
        self._random_sampler._rng.rng.seed(state)
        super().before_trial(study, trial)


def requeue_killed(study: optuna.Study) -> int:
    """Enqueue again the fixed parameters of failed trials (the warm start) that no later
    trial ran; return how many."""
    trials = study.get_trials(deepcopy=False)
    done = [
        t.system_attrs.get("fixed_params", t.params) for t in trials if t.state != TrialState.FAIL
    ]
    n = 0
    for t in trials:
        fixed = t.system_attrs.get("fixed_params")
        if t.state == TrialState.FAIL and fixed and fixed not in done:
            study.enqueue_trial(fixed)
            done.append(fixed)
            n += 1
    return n


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    trials: int,
    timeout: float | None = None,
    progress: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    catch: tuple[type[Exception], ...] = (),
) -> int:
    """Run trials until the study holds ``trials`` finished ones (or ``timeout`` seconds pass).

    ``catch``: exceptions that fail a trial without stopping the loop (a budget-stopped trial).
    With several workers on one journal, a worker waits while the others run the last trials,
    so the study ends with exactly ``trials`` finished ones. Returns the number of trials this
    call ran.
    """
    if trials - finished_trials(study) <= 0:
        return 0
    storage = study._storage
    claiming = isinstance(storage, ClaimingJournal)
    if isinstance(storage, ClaimingJournal):
        storage.cap = trials

    def wrapped(trial: optuna.Trial) -> float:
        if not claiming:  # the journal wrote it with the trial
            trial.set_user_attr(WORKER_ATTR, worker_id())
        return objective(trial)

    stopped = []

    def watch(st: optuna.Study, _t: optuna.trial.FrozenTrial) -> None:
        if st._stop_flag:  # stopped by the budget (``progress`` or the objective)
            stopped.append(True)

    callbacks: list[Any] = [optuna.study.MaxTrialsCallback(trials, states=FINISHED)]
    if progress is not None:
        callbacks.append(progress)
    callbacks.append(watch)
    before = len(study.get_trials(deepcopy=False))
    end = None if timeout is None else time.monotonic() + timeout
    try:
        while not stopped:
            fail_dead_trials(study, own=True)
            done = finished_trials(study)
            running = len(study.get_trials(deepcopy=False, states=(RUN,)))
            left = None if end is None else end - time.monotonic()
            if done >= trials or (left is not None and left <= 0):
                break
            if done + running >= trials:  # the others run the last trials: wait for them
                time.sleep(_POLL_S)
                continue
            try:
                _optimize_once(study, wrapped, trials - done - running, left, callbacks, catch)
            except StudyFull:
                continue
    finally:
        if isinstance(storage, ClaimingJournal):
            storage.cap = None
    return len(study.get_trials(deepcopy=False)) - before


_POLL_S = 0.5


def _optimize_once(
    study: optuna.Study,
    wrapped: Callable[[optuna.Trial], float],
    n: int,
    timeout: float | None,
    callbacks: list[Any],
    catch: tuple[type[Exception], ...],
) -> None:
    logging.getLogger("optuna").setLevel(logging.WARNING)
    backend = getattr(study._storage, "_backend", None)
    quiet = _QuietInterrupt()
    log = logging.getLogger("optuna.study._optimize")
    log.addFilter(quiet)
    # a trial failed by an exception in ``catch`` is expected (the budget ran out): no traceback
    verbosity = optuna.logging.get_verbosity()
    if catch:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with journal_errors(getattr(backend, "_file_path", None)):
            study.optimize(
                wrapped,
                n_trials=n,
                timeout=timeout,
                callbacks=callbacks,
                catch=catch,
                gc_after_trial=False,
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
        log.removeFilter(quiet)


class _QuietInterrupt(logging.Filter):
    """Drop Optuna's report of a trial stopped by Ctrl-C (a 50-line traceback, then "failed
    with value None"): the command prints its own one line, and the trial is marked failed."""

    def __init__(self) -> None:
        super().__init__()
        self._next = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt):
            self._next = True
            return False
        if self._next and "failed with value" in record.getMessage():
            self._next = False
            return False
        return True


def report_fold(trial: optuna.Trial, fold: int, running_mean: float) -> None:
    """Report the running mean after ``fold`` and prune when the pruner says so."""
    trial.report(running_mean, step=fold)
    if trial.should_prune():
        raise optuna.TrialPruned()
