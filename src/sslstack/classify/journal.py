"""The Optuna journal storage of a study: one file per study, safe for several processes.

- Storage: an Optuna journal file ``<ws>/studies/<study>.log`` by default (safe for several
  processes on one machine), or ``--storage URL`` (PostgreSQL, or any SQLAlchemy URL) so
  workers on several machines tune one study.
- With the journal, a trial is created (or taken from the queue) together with its worker's name
  in one record (:class:`ClaimingJournal`), so no failure (a full disk between two records)
  leaves a RUNNING trial that names no worker and so is never failed; and a worker claims a trial
  under a lock beside the journal only while the study holds fewer trials than asked.
- A journal whose last record was torn (a kill or a full disk during an append) is repaired
  on open: the torn bytes are cut (and kept beside it); damage before whole records is refused
  with one line naming the journal and the repair.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError, RunError, SslstackWarning
from ..workspace import Workspace

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RUN = TrialState.RUNNING
WORKER_ATTR = "sslstack_worker"
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


class StudyFull(Exception):
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
                    raise StudyFull
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
            self.set_trial_user_attr(trial_id, WORKER_ATTR, worker_id())
            return super().set_trial_state_values(trial_id, state, values)


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
        user_attrs={WORKER_ATTR: worker_id()},
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


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
