"""Runs: fitted heads, stacks and imported predictions, each a folder in ``<ws>/runs/``.

A run folder ``<ws>/runs/<run_id>/`` holds ``run.json`` (the config, the label encoding and the
scores), ``oof.csv`` (id, fold, one probability column per label in label order), ``models/``
(fold models in safe native formats) and optionally ``test/<dataset>.csv``.

Runs are written into a hidden temporary folder and renamed into place, so a killed process
never leaves a half-written run behind (the temporary folders of dead processes are removed by
the next save). Run numbers are reserved atomically, so several processes can create runs in
one workspace. ``run.json`` records the SHA-256 and row count of ``oof.csv``; a file that was
truncated or edited afterwards is refused when read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._lazy import pid_alive
from .errors import DataError, RunError
from .workspace import Workspace, atomic_write_json, read_json

RUN_KINDS = ("head", "stack", "import")
RUN_SCHEMA = 2  # 1: run.json without a "schema" field (read the same way)
_RESERVED = ".numbers"
_LISTED = 5


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
            raise DataError(f"run {self.id}: {self.oof_path} is missing; refit or remove the run")
        want = self.meta.get("oof_sha256")
        if want and _sha256(self.oof_path) != want:
            frame = _read_pred(self.oof_path, self.labels)
            rows = self.meta.get("oof_rows")
            raise DataError(
                f"run {self.id}: {self.oof_path} differs from the file saved with the run "
                f"({len(frame)} rows, {rows} saved; checksum mismatch): it was truncated or "
                f"edited; refit the run, or remove {self.dir}"
            )
        return _read_pred(self.oof_path, self.labels)

    def test(self, dataset: str) -> pd.DataFrame:
        """Saved test predictions for ``dataset`` (id, one column per label)."""
        path = self.dir / "test" / f"{dataset}.csv"
        if not path.exists():
            raise RunError(f"run {self.id} has no test predictions for {dataset} ({path})")
        return _read_pred(path, self.labels)


def _read_pred(path: Path, labels: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"id": str, "fold": str}, keep_default_na=False)
    frame.columns = [str(c) for c in frame.columns]
    if "fold" in frame and all(re.fullmatch(r"-?[1-9]\d*|0", str(v)) for v in frame["fold"]):
        frame["fold"] = frame["fold"].astype(np.int64)  # numbers stay numbers; "01" stays text
    return frame


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recipe_digest(recipe: dict[str, Any]) -> str:
    """A short digest of everything that determines a run's result (see ``find_run``)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:16]


def find_run(ws: Workspace, recipe: dict[str, Any]) -> Run | None:
    """The run saved with this recipe (same data, features, parameters, seed), if any: a
    rerun of a finished study finds it instead of saving an identical run again."""
    digest = recipe_digest(recipe)
    hits = [r for r in list_runs(ws) if r.meta.get("recipe") == digest]
    return hits[-1] if hits else None


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
    tmp.mkdir(parents=True)
    try:
        if oof is not None:
            _write_csv(tmp / "oof.csv", oof)
            record.extra.update(oof_rows=len(oof), oof_sha256=_sha256(tmp / "oof.csv"))
        for name, frame in (test or {}).items():
            (tmp / "test").mkdir(exist_ok=True)
            _write_csv(tmp / "test" / f"{name}.csv", frame)
        if fill is not None:
            fill(tmp)
        meta = record.to_dict()  # after fill: a record may list what fill wrote (models)
        atomic_write_json(tmp / "run.json", meta)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Run(final, meta)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(path, index=False, float_format="%.9g")


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


def list_runs(ws: Workspace, dataset: str | None = None) -> list[Run]:
    """Every complete run of the workspace (optionally of one dataset), by number."""
    if not ws.runs.exists():
        return []
    runs = []
    for path in ws.runs.glob("*/run.json"):
        if path.parent.name.startswith("."):
            continue
        meta = read_json(path)
        if dataset is None or meta.get("dataset") == dataset:
            runs.append(Run(path.parent, meta))
    return sorted(runs, key=lambda r: r.number)


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
        known = ", ".join(r.id for r in runs[-10:]) or "none yet"
        raise RunError(f"no run {text!r} in {ws.runs} (latest: {known}); see 'sslstack runs ls'")
    raise RunError(f"run {text!r} is ambiguous: {', '.join(r.id for r in hits)}")
