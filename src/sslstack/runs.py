"""Runs: fitted heads, stacks and imported predictions, each a folder in ``<ws>/runs/``.

A run folder ``<ws>/runs/<run_id>/`` holds ``run.json`` (the config, the label encoding and the
scores), ``oof.csv`` (id, fold, one probability column per label in label order), ``models/``
(fold models in safe native formats) and optionally ``test/<dataset>.csv``.

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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DamagedFileError, DataError, RunError, SslstackWarning
from .workspace import (
    Workspace,
    atomic_write_json,
    confined,
    file_lock,
    file_sha256,
    pid_alive,
    quarantine,
    read_csv,
    read_json,
    read_text,
)

RUN_KINDS = ("head", "stack", "import")
# 1: run.json without a "schema" field; 2: typed record; 3: with its own checksum and the
# checksums of the run's files (all read the same way; only 3 is checked)
RUN_SCHEMA = 3
_RESERVED = ".numbers"
QUARANTINE = ".quarantine"
_WHY = "WHY-DAMAGED.txt"
_LISTED = 5
_PLAIN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass
class RunRecord:
    """What ``run.json`` holds, one shape for heads, stacks and imports.

    The fields every reader relies on are typed; what only one kind has (a head's study and
    models, a stack's method, weights and table, ...) is in ``extra``. On disk it is one flat
    JSON object with a ``schema`` number; :meth:`from_dict` reads every schema so far.
    """

    id: str
    number: int
    kind: str
    dataset: str
    task: str
    labels: list[str]
    positive: str | None = None
    folds_digest: str | None = None
    metric: str | None = None
    score: float | None = None
    scores: dict[str, Any] = field(default_factory=dict)  # metric -> score (None: not defined)
    fold_scores: list[Any] = field(default_factory=list)
    head: str | None = None
    encoder: str | None = None
    features: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    time_s: float = 0.0
    base_runs: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    schema: int = RUN_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise RunError(
                f"run {self.id}: kind {self.kind!r} is not one of {', '.join(RUN_KINDS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d.pop("extra"), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Read a ``run.json`` object (any schema); unknown keys land in ``extra``.

        Raises:
            RunError: a required field is missing.
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in ("id", "number", "kind", "dataset", "task", "labels") if k not in d]
        if missing:
            raise RunError(f"run metadata lacks {', '.join(repr(k) for k in missing)}")
        known = {k: v for k, v in d.items() if k in names}
        known.setdefault("schema", 1)
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


@dataclass(frozen=True)
class Run:
    """One run folder and its ``run.json``."""

    dir: Path
    meta: dict[str, Any]

    @property
    def record(self) -> RunRecord:
        """``run.json`` as a typed :class:`RunRecord`."""
        return RunRecord.from_dict(self.meta)

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def number(self) -> int:
        return int(self.meta["number"])

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def oof_path(self) -> Path:
        return self.dir / "oof.csv"

    def oof(self) -> pd.DataFrame:
        """The out-of-fold predictions: id, fold, one probability column per label.

        Raises:
            DataError: ``oof.csv`` is missing, or differs from what was saved (its checksum
                and row count are in ``run.json``; runs saved before that are not checked).
        """
        if not self.oof_path.exists():
            raise DamagedFileError(
                self.oof_path, f"run {self.id}: the file is missing", _advice(self)
            )
        want = self.meta.get("oof_sha256")
        if want and file_sha256(self.oof_path) != want:
            rows = self.meta.get("oof_rows")
            try:
                have = f"{len(_read_pred(self.oof_path, self.labels))} rows"
            except DamagedFileError:
                have = "unreadable"
            raise DamagedFileError(
                self.oof_path,
                f"run {self.id}: oof.csv differs from the file saved with the run ({have}, "
                f"{rows} saved; checksum mismatch): it was truncated or edited",
                _advice(self),
            )
        return _read_pred(self.oof_path, self.labels)

    def test(self, dataset: str) -> pd.DataFrame:
        """Saved test predictions for ``dataset`` (id, one column per label)."""
        path = confined(self.dir, f"test/{dataset}.csv")
        if not path.exists():
            raise RunError(f"run {self.id} has no test predictions for {dataset} ({path})")
        self.check_file(f"test/{dataset}.csv")
        return _read_pred(path, self.labels)

    def check_file(self, name: str) -> Path:
        """The run's file ``name`` (relative to its folder), confined to the folder and checked
        against the checksum saved with the run (runs saved before checksums: not checked).

        Raises:
            DamagedFileError: a path leaving the folder, a missing file, a checksum mismatch.
        """
        path = confined(self.dir, name)
        want = (self.meta.get("files") or {}).get(name)
        if want is None:
            return path
        if not path.is_file():
            raise DamagedFileError(path, f"run {self.id}: the file is missing", _advice(self))
        if file_sha256(path) != want:
            raise DamagedFileError(
                path,
                f"run {self.id}: the file differs from its checksum (damaged or edited)",
                _advice(self),
            )
        return path

    def verify(self) -> None:
        """Check every file saved with the run against its checksum.

        Raises:
            DamagedFileError: the first file that is missing or differs.
        """
        for name in self.meta.get("files") or {}:
            self.check_file(name)
        if "oof.csv" not in (self.meta.get("files") or {}) and self.meta.get("oof_sha256"):
            self.oof()


def verified_runs(ws: Workspace, dataset: str | None = None) -> list[Run]:
    """:func:`list_runs`, each run's files checked too; damaged ones quarantined (one line each)."""
    good = []
    for run in list_runs(ws, dataset):
        try:
            run.verify()
        except DamagedFileError as e:
            quarantine_run(ws, run.dir, e)
            continue
        good.append(run)
    return good


def _advice(run: Run) -> str:
    return "restore the file, or refit the run (a damaged run is set aside in runs/.quarantine)"


def _read_pred(path: Path, labels: list[str]) -> pd.DataFrame:
    frame = read_csv(path, dtype={"id": str, "fold": str}, keep_default_na=False)
    frame.columns = [str(c) for c in frame.columns]
    if "fold" in frame and all(re.fullmatch(r"-?[1-9]\d*|0", str(v)) for v in frame["fold"]):
        frame["fold"] = frame["fold"].astype(np.int64)  # numbers stay numbers; "01" stays text
    return frame


_sha256 = file_sha256


def recipe_digest(recipe: dict[str, Any]) -> str:
    """A short digest of everything that determines a run's result (see ``find_run``)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:16]


def find_run(ws: Workspace, recipe: dict[str, Any] | str) -> Run | None:
    """The run saved with this recipe (same data, features, parameters, seed), if any: a
    rerun of a finished study finds it instead of saving an identical run again.
    ``recipe``: the recipe or its :func:`recipe_digest`."""
    digest = recipe if isinstance(recipe, str) else recipe_digest(recipe)
    hits = [r for r in list_runs(ws, quiet=True) if r.meta.get("recipe") == digest]
    return hits[-1] if hits else None


@contextlib.contextmanager
def recipe_lock(ws: Workspace, digest: str) -> Iterator[None]:
    """Held while a result with this recipe is looked up and saved: several processes that
    reach the same result (workers of one study, the same stack twice) save it once."""
    with file_lock(ws.runs / _RESERVED / f"recipe-{digest}.lock"):
        yield


def save_once(
    ws: Workspace,
    meta: RunRecord,
    oof: pd.DataFrame | None,
    digest: str,
    **kwargs: Any,
) -> tuple[Run, bool]:
    """Save a run unless one with the recipe ``digest`` exists; return ``(run, saved)``.

    The record gets ``recipe = digest``; its id and number are reserved only when it is saved
    (``meta.id`` empty: reserved here with the tag ``meta.extra["tag"]``).
    """
    with recipe_lock(ws, digest):
        same = find_run(ws, digest)
        if same is not None:
            return same, False
        meta.extra["recipe"] = digest
        if not meta.id:
            meta.id, meta.number = new_run_id(ws, meta.kind, str(meta.extra.pop("tag", "run")))
        return save_run(ws, meta, oof, **kwargs), True


def remove_stale_tmp(ws: Workspace) -> list[str]:
    """Remove ``.<run>.tmp-PID`` folders whose process is gone (a save killed midway)."""
    removed: list[str] = []
    if not ws.runs.exists():
        return removed
    for path in ws.runs.glob(".*.tmp-*"):
        pid = path.name.rpartition("-")[2]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def new_run_id(ws: Workspace, kind: str, tag: str) -> tuple[str, int]:
    """Reserve the next run number and return ``(run_id, number)``, e.g. ``r0007-xgb-logmel``.

    The number is reserved by creating ``<runs>/.numbers/<n>`` atomically, so concurrent
    processes never share one.
    """
    if kind not in RUN_KINDS:
        raise RunError(f"unknown run kind {kind!r}; use one of {', '.join(RUN_KINDS)}")
    reserved = ws.runs / _RESERVED
    reserved.mkdir(parents=True, exist_ok=True)
    used = [int(p.name) for p in reserved.iterdir() if p.name.isdigit()]
    used += [r.number for r in list_runs(ws)]
    number = max(used, default=0) + 1
    while True:
        try:
            (reserved / str(number)).mkdir()
            break
        except FileExistsError:
            number += 1
    return f"r{number:04d}-{_slug(tag)}", number


def save_run(
    ws: Workspace,
    meta: RunRecord | dict[str, Any],
    oof: pd.DataFrame | None,
    *,
    fill: Callable[[Path], None] | None = None,
    test: dict[str, pd.DataFrame] | None = None,
    validate: bool = True,
) -> Run:
    """Write a run atomically: ``run.json``, ``oof.csv``, ``test/*.csv`` and what ``fill`` adds.

    Args:
        meta: the run's :class:`RunRecord` (or its dict: ``id``, ``number``, ``kind``,
            ``dataset``, ``task``, ``labels`` at least).
        oof: out-of-fold predictions (validated by :func:`check_oof` unless ``validate`` is off).
        fill: called with the temporary run folder to write models and other files into it.
        test: test predictions per dataset name.

    Raises:
        DataError: the out-of-fold predictions do not match the dataset's folds.
        RunError: a run with this id exists.
    """
    record = meta if isinstance(meta, RunRecord) else RunRecord.from_dict(meta)
    record.schema = RUN_SCHEMA
    meta = record.to_dict()
    final = ws.run_dir(meta["id"])
    if final.exists():
        raise RunError(f"run {meta['id']} exists already ({final})")
    if oof is not None and validate:
        check_oof(ws, meta, oof)
    remove_stale_tmp(ws)
    tmp = ws.runs / f".{meta['id']}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if oof is not None:
            _write_csv(tmp / "oof.csv", oof)
            record.extra.update(oof_rows=len(oof), oof_sha256=_sha256(tmp / "oof.csv"))
        for name, frame in (test or {}).items():
            (tmp / "test").mkdir(exist_ok=True)
            _write_csv(tmp / "test" / f"{name}.csv", frame)
        if fill is not None:
            fill(tmp)
        record.extra["files"] = _checksums(tmp)
        meta = record.to_dict()  # after fill: a record may list what fill wrote (models)
        atomic_write_json(tmp / "run.json", meta, checksum=True)
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None:
            # the run's final path, not the hidden temporary one (nothing of it is left)
            raise OSError(e.errno, e.strerror, str(final)) from None
        raise
    return Run(final, read_json(final / "run.json"))


def _checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (but run.json), by path relative to it."""
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    guard_finite(frame, path)
    frame.to_csv(path, index=False, float_format="%.9g")


def guard_finite(frame: pd.DataFrame, path: Path) -> None:
    """Refuse predictions with NaN or infinities before they are written."""
    nums = frame.select_dtypes(include="number")
    if nums.size and not np.isfinite(nums.to_numpy(dtype=np.float64)).all():
        bad = nums.columns[~np.isfinite(nums.to_numpy(dtype=np.float64)).all(axis=0)]
        raise DataError(
            f"{path}: refusing to write NaN or infinite values (column(s) "
            f"{', '.join(map(str, bad[:_LISTED]))}); the features or the model gave non-finite "
            "numbers: check the audio and the store ('sslstack extract' refuses such audio)"
        )


def check_oof(ws: Workspace, meta: dict[str, Any], oof: pd.DataFrame) -> None:
    """Refuse out-of-fold predictions that do not line up with the dataset's folds.

    Checks: columns are ``id``, ``fold`` and the labels in order; ids are unique and belong to
    the dataset's fold assignment; each row's fold is the saved fold of its id; probabilities
    are finite numbers in [0, 1].

    Raises:
        DataError: naming the first offending ids or columns.
    """
    from .folds import load_folds

    labels = [str(v) for v in meta["labels"]]
    want = ["id", "fold", *labels]
    cols = [str(c) for c in oof.columns]
    if cols != want:
        raise DataError(
            f"run {meta['id']}: out-of-fold columns are {cols[:8]}; expected id, fold, then one "
            f"column per label in label order ({', '.join(labels[:8])})"
        )
    ids = oof["id"].astype(str)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise DataError(
            f"run {meta['id']}: {len(dup)} duplicate id(s) (first: {', '.join(dup[:_LISTED])})"
        )
    folds = load_folds(ws, meta["dataset"])
    if meta.get("folds_digest") and meta["folds_digest"] != folds.digest:
        raise DataError(
            f"run {meta['id']}: made with folds {meta['folds_digest']}, but dataset "
            f"{meta['dataset']} has folds {folds.digest}"
        )
    pos = {i: n for n, i in enumerate(folds.ids)}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise DataError(
            f"run {meta['id']}: {len(unknown)} id(s) are not in dataset {meta['dataset']} "
            f"(first: {', '.join(unknown[:_LISTED])})"
        )
    saved = np.array(folds.label_of(ids.tolist()), dtype=object)
    written = np.array([_fold_text(v) for v in oof["fold"]], dtype=object)
    bad = np.flatnonzero(saved != written)
    if len(bad):
        first = ", ".join(
            f"{ids.iloc[i]} (fold {oof['fold'].iloc[i]} != {saved[i]})" for i in bad[:_LISTED]
        )
        raise DataError(
            f"run {meta['id']}: {len(bad)} row(s) disagree with the dataset's folds: {first}"
        )
    proba = oof[labels].to_numpy(dtype=np.float64)
    if not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1 + 1e-6).any():
        rows = np.flatnonzero(
            ~np.isfinite(proba).all(axis=1)
            | (proba < 0).any(axis=1)
            | (proba > 1 + 1e-6).any(axis=1)
        )
        raise DataError(
            f"run {meta['id']}: probabilities must be finite and in [0, 1] (first bad ids: "
            f"{', '.join(ids.iloc[rows[:_LISTED]])})"
        )


def _fold_text(value: Any) -> str:
    """A fold label as written in a file (``3`` and ``"3"`` alike)."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


def _load_run(folder: Path) -> Run:
    """One run folder, checked: ``run.json`` readable and matching its checksum, names that
    stay inside the workspace.

    Raises:
        DamagedFileError: naming the file and what to do.
    """
    path = folder / "run.json"
    advice = "restore the file, or refit the run (a damaged run is set aside in runs/.quarantine)"
    if not path.is_file():
        raise DamagedFileError(path, "the run's record is missing", advice)
    meta = read_json(path, advice=advice)
    if not isinstance(meta, dict):
        raise DamagedFileError(path, "damaged: not a JSON object", advice)
    try:
        if int(meta.get("schema") or 1) >= 3 and "_sha256" not in meta:
            raise DamagedFileError(path, "damaged: its checksum is missing", advice)
        record = RunRecord.from_dict(meta)
        int(record.number)
        [str(v) for v in record.labels]
    except (RunError, TypeError, ValueError) as e:
        raise DamagedFileError(path, f"damaged: {e}", advice) from None
    if record.id != folder.name:
        raise DamagedFileError(path, f"names run {record.id!r}, not {folder.name!r}", advice)
    _check_names(path, meta)
    return Run(folder, meta)


def _check_names(path: Path, meta: dict[str, Any]) -> None:
    """Names in a record that become paths (dataset, store, models) must be plain names."""
    fc = meta.get("feature_choice") or {}
    names = [meta.get("dataset"), fc.get("store") if isinstance(fc, dict) else None]
    for name in names:
        if name is not None and not (_PLAIN.fullmatch(str(name)) and str(name) not in ("..",)):
            raise DamagedFileError(
                path,
                f"refused the name {str(name)!r}: a run may only name a dataset or store of "
                "its workspace",
                "the run record was edited; refit the run (or remove its folder)",
            )
    for name in meta.get("models") or []:
        confined(path.parent / "models", str(name))


def list_runs(ws: Workspace, dataset: str | None = None, *, quiet: bool = False) -> list[Run]:
    """Every complete run of the workspace (optionally of one dataset), by number.

    A damaged run is quarantined (see :func:`quarantine_run`) with one warning line each
    (``quiet``: without the warning) and left out.
    """
    if not ws.runs.exists():
        return []
    runs = []
    for folder in sorted(ws.runs.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            run = _load_run(folder)
        except DamagedFileError as e:
            quarantine_run(ws, folder, e, warn=not quiet)
            continue
        if dataset is None or run.meta.get("dataset") == dataset:
            runs.append(run)
    return sorted(runs, key=lambda r: r.number)


def quarantine_run(
    ws: Workspace, folder: Path, error: DamagedFileError, warn: bool = True
) -> Path | None:
    """Move a damaged run to ``<ws>/runs/.quarantine/`` with a note of why; warn in one line.
    Returns where it went (None: another process moved it first)."""
    moved = quarantine(folder, ws.runs / QUARANTINE)
    if moved is not None:
        with contextlib.suppress(OSError):  # a full disk keeps the move, not the note
            (moved / _WHY).write_text(str(error) + "\n", encoding="utf-8")
    if warn:
        where = f"moved to {moved}" if moved is not None else "moved aside"
        warnings.warn(
            f"run {folder.name} is damaged and left out ({where}): {error}",
            SslstackWarning,
            stacklevel=3,
        )
    return moved


def set_aside(ws: Workspace, run: Run, error: DamagedFileError) -> DamagedFileError:
    """Quarantine ``run`` for ``error`` (a damaged file of it); the error, saying where it went."""
    quarantine_run(ws, run.dir, error, warn=False)
    return error


def damaged_runs(ws: Workspace) -> list[dict[str, str]]:
    """The quarantined runs: ``{"run", "dir", "why"}`` each (for ``runs ls``)."""
    folder = ws.runs / QUARANTINE
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        why = "damaged"
        with contextlib.suppress(OSError, DamagedFileError):
            why = read_text(path / _WHY).strip() or why
        out.append({"run": path.name.split(".damaged-")[0], "dir": str(path), "why": why})
    return out


def damaged_note(run_id: str, error: Exception) -> None:
    """One warning line: a run left out of a stack or report because it is damaged."""
    warnings.warn(f"run {run_id} left out: {error}", SslstackWarning, stacklevel=3)


def load_run(ws: Workspace, ref: str | int) -> Run:
    """A run by id, number (``7`` or ``"7"``), ``r0007`` or unique id prefix.

    Raises:
        RunError: no run, or several that the reference does not tell apart.
    """
    runs = list_runs(ws)
    text = str(ref).strip()
    if text.isdigit():
        hits = [r for r in runs if r.number == int(text)]
    else:
        hits = [r for r in runs if r.id == text] or [r for r in runs if r.id.startswith(text)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        bad = [d for d in damaged_runs(ws) if _refers(d["run"], text)]
        if bad:
            raise RunError(f"run {bad[0]['run']} is damaged ({bad[0]['dir']}): {bad[0]['why']}")
        known = ", ".join(r.id for r in runs[-10:]) or "none yet"
        raise RunError(f"no run {text!r} in {ws.runs} (latest: {known}); see 'sslstack runs ls'")
    raise RunError(f"run {text!r} is ambiguous: {', '.join(r.id for r in hits)}")


def _refers(run_id: str, ref: str) -> bool:
    m = re.match(r"r(\d+)", run_id)
    if ref.isdigit():
        return m is not None and int(m.group(1)) == int(ref)
    return run_id == ref or run_id.startswith(ref)
