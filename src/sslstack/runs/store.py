"""Saving and finding runs: atomic saves, run numbers, one result saved once, listing and
loading, and setting damaged runs aside in ``<ws>/runs/.quarantine/``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DamagedFileError, RunError, SslstackWarning
from ..workspace import (
    Workspace,
    atomic_write_json,
    file_lock,
    file_sha256,
    pid_alive,
    quarantine,
    read_json,
    read_text,
)
from .checks import check_names, check_oof, guard_finite
from .folder import ADVICE, Run
from .record import RUN_KINDS, RUN_SCHEMA, RunRecord

_RESERVED = ".numbers"
QUARANTINE = ".quarantine"
_WHY = "WHY-DAMAGED.txt"


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


def recipe_digest(recipe: dict[str, Any]) -> str:
    """A short digest of everything that determines a run's result (see ``find_run``)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:16]


def find_run(ws: Workspace, recipe: dict[str, Any] | str) -> Run | None:
    """The run saved with this recipe (same data, features, parameters, seed), if any: a
    rerun of a finished study finds it instead of saving an identical run again.
    ``recipe``: the recipe or its :func:`recipe_digest`."""
    digest = recipe if isinstance(recipe, str) else recipe_digest(recipe)
    hits = [r for r in list_runs(ws, quiet=True) if r.record.recipe == digest]
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
        meta.recipe = digest
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
    final = ws.run_dir(record.id)
    if final.exists():
        raise RunError(f"run {record.id} exists already ({final})")
    if oof is not None and validate:
        check_oof(ws, record, oof)
    remove_stale_tmp(ws)
    tmp = ws.runs / f".{record.id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if oof is not None:
            _write_csv(tmp / "oof.csv", oof)
            record.oof_rows, record.oof_sha256 = len(oof), file_sha256(tmp / "oof.csv")
        for name, frame in (test or {}).items():
            (tmp / "test").mkdir(exist_ok=True)
            _write_csv(tmp / "test" / f"{name}.csv", frame)
        if fill is not None:
            fill(tmp)
        record.files = _checksums(tmp)
        # after fill: a record may list what fill wrote (models)
        atomic_write_json(tmp / "run.json", record.to_dict(), checksum=True)
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None:
            # the run's final path, not the hidden temporary one (nothing of it is left)
            raise OSError(e.errno, e.strerror, str(final)) from None
        raise
    return Run(final, RunRecord.from_dict(read_json(final / "run.json")))


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


def _load_run(folder: Path) -> Run:
    """One run folder, checked: ``run.json`` readable and matching its checksum, names that
    stay inside the workspace.

    Raises:
        DamagedFileError: naming the file and what to do.
    """
    path = folder / "run.json"
    if not path.is_file():
        raise DamagedFileError(path, "the run's record is missing", ADVICE)
    meta = read_json(path, advice=ADVICE)
    if not isinstance(meta, dict):
        raise DamagedFileError(path, "damaged: not a JSON object", ADVICE)
    try:
        if int(meta.get("schema") or 1) >= 3 and "_sha256" not in meta:
            raise DamagedFileError(path, "damaged: its checksum is missing", ADVICE)
        record = RunRecord.from_dict(meta)
    except (RunError, TypeError, ValueError) as e:
        raise DamagedFileError(path, f"damaged: {e}", ADVICE) from None
    if record.id != folder.name:
        raise DamagedFileError(path, f"names run {record.id!r}, not {folder.name!r}", ADVICE)
    check_names(path, record)
    return Run(folder, record)


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
        if dataset is None or run.record.dataset == dataset:
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
