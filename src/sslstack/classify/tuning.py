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
- A journal whose last record was torn (a kill or a full disk during an append) is repaired
  on open: the torn bytes are cut (and kept beside it); damage before whole records is refused
  with one line naming the journal and the repair.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError, RunError, SslstackWarning
from ..workspace import Workspace, pid_alive

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
    with journal_errors(path):
        repair_journal(Path(path), lock)
        return ClaimingJournal(JournalFileBackend(path, lock), Path(f"{path}.claim"))


class _Enough(Exception):
    """The study holds (finished or running) the trials asked for: claim no new one."""


class ClaimingJournal(optuna.storages.JournalStorage):
    """The journal storage, where a trial becomes RUNNING in one record that names its worker,
    and only under a claim lock while the study holds fewer trials than ``cap``."""

    def __init__(self, backend: Any, claim: Path) -> None:
        super().__init__(backend)
        self.claim = claim
        self.cap: int | None = None  # finished + running trials the study may hold

    @contextlib.contextmanager
    def _claiming(self, study_id: int) -> Iterator[None]:
        from ..workspace import file_lock

        with file_lock(self.claim):
            if self.cap is not None:
                held = self.get_all_trials(study_id, deepcopy=False, states=(*FINISHED, RUN))
                if len(held) >= self.cap:
                    raise _Enough
            yield

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        if template_trial is not None:
            return super().create_new_trial(study_id, template_trial)
        with self._claiming(study_id):
            return super().create_new_trial(study_id, _running_template())

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        if state != RUN:
            return super().set_trial_state_values(trial_id, state, values)
        study_id = self._replay_result._trial_id_to_study_id[trial_id]
        with self._claiming(study_id):  # a queued trial: take it only if no one has
            if self.get_trial(trial_id).state != TrialState.WAITING:
                return False
            self.set_trial_user_attr(trial_id, _WORKER_ATTR, _worker_id())
            return super().set_trial_state_values(trial_id, state, values)


RUN = TrialState.RUNNING


def _running_template() -> Any:
    import datetime

    return optuna.trial.FrozenTrial(
        number=-1,
        state=RUN,
        value=None,
        datetime_start=datetime.datetime.now(tz=datetime.timezone.utc),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={_WORKER_ATTR: _worker_id()},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )


@contextlib.contextmanager
def journal_errors(path: str | None) -> Iterator[None]:
    """OS errors while writing the journal name it (a full disk is then one line). Optuna
    hides such an error behind ``AssertionError: Should not reach.``: it is unwrapped."""
    try:
        yield
    except AssertionError as e:
        cause = e.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise _named(cause, path) from None
    except OSError as e:
        raise _named(e, path) from None


def _named(e: OSError, path: str | None) -> OSError:
    if e.filename is None and path:
        return OSError(e.errno, e.strerror, path)
    return e


# the keys Optuna's journal replay reads from each record, by op code: a record that parses
# but lacks one (a flipped bit in a key) is damaged, not a KeyError deep in Optuna
_RECORD_KEYS = {
    0: ("study_name", "directions"),
    1: ("study_id",),
    2: ("study_id", "user_attr"),
    3: ("study_id", "system_attr"),
    4: ("study_id", "datetime_start"),
    5: ("trial_id", "param_name", "param_value_internal", "distribution"),
    6: ("trial_id", "state", "values"),
    7: ("trial_id", "step", "intermediate_value"),
    8: ("trial_id", "user_attr"),
    9: ("trial_id", "system_attr"),
}


def _bad_line(line: bytes) -> bool:
    try:
        rec = json.loads(line)
    except ValueError:
        return True
    if not isinstance(rec, dict) or "worker_id" not in rec:
        return True
    keys = _RECORD_KEYS.get(rec.get("op_code"))  # type: ignore[arg-type]
    if keys is None or any(k not in rec for k in keys):
        return True
    dists = [rec["distribution"]] if "distribution" in rec else []
    dists += list((rec.get("distributions") or {}).values())
    try:  # a flipped class name or field in a distribution: Optuna's replay raises
        for d in dists:
            optuna.distributions.json_to_distribution(d)
    except (ValueError, KeyError, TypeError, AttributeError):
        return True
    return False


def _whole(line: bytes) -> bytes | None:
    """The line when it is a whole record, its salvaged record, or None (torn)."""
    if not line.endswith(b"\n"):
        return None
    return line if not _bad_line(line) else _salvage(line)


def _salvage(line: bytes) -> bytes | None:
    """The whole record at the end of a line that a torn append and the next append merged."""
    pos = line.rfind(b'{"op_code"')
    while pos > 0:
        if not _bad_line(line[pos:]):
            return line[pos:]
        pos = line.rfind(b'{"op_code"', 0, pos)
    return None


def repair_journal(path: Path, lock: Any) -> str | None:
    """Cut a torn tail off an Optuna journal (under its lock); return what was done.

    The records before a torn one are whole (each append is one write of whole lines), so
    the study is intact up to its last whole record; the cut bytes are kept in
    ``<journal>.torn-<time>``. A record torn and then followed by a later append is salvaged
    from its line.

    Raises:
        RunError: damage that is not a torn record (names the journal, the line, the repair).
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    with _held(lock):
        raw = path.read_bytes()
        lines = raw.splitlines(keepends=True)
        fixed = [_whole(ln) for ln in lines]
        if fixed == lines:
            return None
        last = max((n for n, ln in enumerate(fixed) if ln is not None), default=-1)
        holes = [n for n, ln in enumerate(fixed[:last]) if ln is None]
        if holes:
            n = holes[0] + 1
            raise RunError(
                f"{path}: line {n} of the Optuna journal is damaged and whole records "
                f"follow it; cut it there (head -n {n - 1} {path} > {path}.fixed && mv "
                f"{path}.fixed {path}) to keep the trials before it, or move the journal "
                "away to start the study afresh"
            )
        body = b"".join(ln for ln in fixed[: last + 1] if ln is not None)
        _keep_aside(path, raw[len(body) :] if raw.startswith(body) else raw)
        if raw.startswith(body):  # only a torn tail: cut it in place (offsets stay valid)
            os.truncate(path, len(body))
            what = f"cut {len(raw) - len(body)} torn byte(s) after record {last + 1}"
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(body)
            os.replace(tmp, path)
            what = "salvaged a record that a torn one was merged with"
    warnings.warn(
        f"study journal {path}: {what} (a process was killed or the disk was full while "
        f"writing it); the study continues from its last whole record",
        SslstackWarning,
        stacklevel=3,
    )
    return what


@contextlib.contextmanager
def _held(lock: Any) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _keep_aside(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):  # a full disk may not hold the copy: the cut matters
        path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}").write_bytes(data)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_trials(study: optuna.Study, *, own: bool = False) -> int:
    """Mark RUNNING trials whose worker (on this machine) is gone as FAIL; return how many.

    ``own``: this process's RUNNING trials count as dead too (called between trials, when this
    process runs none: such a trial is a record a torn journal lost the end of).
    """
    host, me = socket.gethostname(), os.getpid()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get(_WORKER_ATTR, ""))
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
) -> optuna.Study:
    """Create or load a study, with a seeded TPE sampler and a median pruner over folds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(ws, study_name, storage)
    # one fold's score is noisy (with grouped folds it may be one speaker): decide from the
    # running mean of two folds or more
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=1)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=store,
            direction=direction,  # type: ignore[arg-type]
            pruner=pruner,
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
            trial.set_user_attr(_WORKER_ATTR, _worker_id())
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
            except _Enough:
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
