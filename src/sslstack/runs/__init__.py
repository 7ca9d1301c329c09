"""Runs: fitted heads, stacks and imported predictions, each a folder in ``<ws>/runs/``.

A run folder ``<ws>/runs/<run_id>/`` holds ``run.json`` (a :class:`RunRecord`: the config, the
label encoding and the scores), ``oof.csv`` (id, fold, one probability column per label in
label order), ``models/`` (fold models in safe native formats) and optionally
``test/<dataset>.csv``. :class:`RunRecord` is the one way a run's metadata is read and
written (``Run.record``); ``record.py`` says which schemas of ``run.json`` it reads.

Runs are written into a hidden temporary folder and renamed into place, so a killed process
never leaves a half-written run behind (the temporary folders of dead processes are removed by
the next save). Run numbers are reserved atomically, so several processes can create runs in
one workspace. ``run.json`` carries its own checksum and the SHA-256 of every file of the run
(``oof.csv``, test predictions, models); a file that was truncated, edited or damaged
afterwards is refused when read.

A run that is damaged (``run.json`` unreadable or failing its checksum, a file that differs
from its checksum, a path that leaves the run's folder) is precious, not derived: it is moved to
``<ws>/runs/.quarantine/`` with a note of why; ``runs ls`` lists it as damaged, and ``stack`` and
``report`` go on without it, saying so in one line. One result is saved once: :func:`save_once`
saves a run under a lock on its recipe, unless a run with that recipe exists.

Modules: ``record.py`` (the record and its schemas), ``folder.py`` (:class:`Run`: one folder,
its files checked), ``checks.py`` (out-of-fold alignment, names), ``store.py`` (saving,
numbering, listing, loading, quarantine).
"""

from .checks import check_oof, guard_finite
from .folder import Run
from .record import RUN_KINDS, RUN_SCHEMA, FeatureChoiceRef, FeatureRef, RunRecord
from .store import (
    QUARANTINE,
    damaged_note,
    damaged_runs,
    find_run,
    list_runs,
    load_run,
    new_run_id,
    quarantine_run,
    recipe_digest,
    recipe_lock,
    remove_stale_tmp,
    save_once,
    save_run,
    set_aside,
    verified_runs,
)

__all__ = [
    "QUARANTINE",
    "RUN_KINDS",
    "RUN_SCHEMA",
    "FeatureChoiceRef",
    "FeatureRef",
    "Run",
    "RunRecord",
    "check_oof",
    "damaged_note",
    "damaged_runs",
    "find_run",
    "guard_finite",
    "list_runs",
    "load_run",
    "new_run_id",
    "quarantine_run",
    "recipe_digest",
    "recipe_lock",
    "remove_stale_tmp",
    "save_once",
    "save_run",
    "set_aside",
    "verified_runs",
]
