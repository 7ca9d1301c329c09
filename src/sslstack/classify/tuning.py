"""Optuna studies: storage, sampler, pruner, and the trial loop.

- Storage: an Optuna journal file ``<ws>/studies/<study>.log`` by default (safe for several
  processes on one machine), or ``--storage URL`` (PostgreSQL, or any SQLAlchemy URL) so
  workers on several machines tune one study.
- TPE sampler, seeded; a median pruner fed with the running mean of the fold scores after each
  fold (never per boosting round, which would mix folds).
- ``trials`` counts finished trials (complete or pruned) of the study: rerunning with a larger
  number continues the study; several workers stop together when the study reaches it.
- A worker killed mid-trial leaves a RUNNING trial: on the next start, RUNNING trials of this
  machine whose process is gone are marked failed (journal storage); the RDB storage uses
  Optuna's heartbeat for the same.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError, RunError
from ..workspace import Workspace

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_WORKER_ATTR = "sslstack_worker"
JOURNAL_LOCK_GRACE = 5


def storage_label(ws: Workspace, study_name: str, url: str | None) -> str:
    """Where a study lives, printable (passwords removed)."""
    if url:
        from sqlalchemy.engine import make_url

        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - any unparsable URL is shown as given
            return url
    return str(ws.studies / f"{study_name}.log")


def open_storage(ws: Workspace, study_name: str, url: str | None = None) -> Any:
    """The study's storage: the embedded journal file, or the database at ``url``.

    Raises:
        ConfigError: the URL cannot be used (driver missing, server unreachable).
    """
    if url:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=20, grace_period=60)
        except Exception as e:  # noqa: BLE001 - sqlalchemy raises many kinds
            raise ConfigError(f"--storage {storage_label(ws, study_name, url)}: {e}") from e
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    ws.studies.mkdir(parents=True, exist_ok=True)
    path = str(ws.studies / f"{study_name}.log")
    # the lock is held for one append at a time; a process killed while holding it leaves the
    # lock file behind, which the next writer breaks after JOURNAL_LOCK_GRACE seconds
    lock = JournalFileOpenLock(path, grace_period=JOURNAL_LOCK_GRACE)
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock))


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study) -> int:
    """Mark RUNNING trials whose worker (on this machine) is gone as FAIL; return how many."""
    host = socket.gethostname()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get(_WORKER_ATTR, ""))
        h, _, pid = worker.rpartition(":")
        if h == host and pid.isdigit() and not _alive(int(pid)):
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
) -> optuna.Study:
    """Create or load a study, with a seeded TPE sampler and a median pruner over folds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(ws, study_name, storage)
    # one fold's score is noisy (with grouped folds it may be one speaker): decide from the
    # running mean of two folds or more
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=1)
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        direction=direction,  # type: ignore[arg-type]
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise RunError(
            f"study {study_name} optimizes in direction {study.direction.name.lower()}, "
            f"not {direction}; use another --study name"
        )
    fail_dead_trials(study)
    done = len(study.get_trials(deepcopy=False))
    # reseed on resume so a continued study does not replay the first run's random trials
    study.sampler = optuna.samplers.TPESampler(
        seed=seed + done, n_startup_trials=min(10, max(n_startup, 3)), multivariate=True
    )
    return study


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
    Returns the number of trials this call ran.
    """
    remaining = trials - finished_trials(study)
    if remaining <= 0:
        return 0

    def wrapped(trial: optuna.Trial) -> float:
        trial.set_user_attr(_WORKER_ATTR, _worker_id())
        return objective(trial)

    callbacks: list[Any] = [optuna.study.MaxTrialsCallback(trials, states=FINISHED)]
    if progress is not None:
        callbacks.append(progress)
    before = len(study.get_trials(deepcopy=False))
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # a trial failed by an exception in ``catch`` is expected (the budget ran out): no traceback
    verbosity = optuna.logging.get_verbosity()
    if catch:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study.optimize(
            wrapped,
            n_trials=remaining,
            timeout=timeout,
            callbacks=callbacks,
            catch=catch,
            gc_after_trial=False,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return len(study.get_trials(deepcopy=False)) - before


def report_fold(trial: optuna.Trial, fold: int, running_mean: float) -> None:
    """Report the running mean after ``fold`` and prune when the pruner says so."""
    trial.report(running_mean, step=fold)
    if trial.should_prune():
        raise optuna.TrialPruned()
