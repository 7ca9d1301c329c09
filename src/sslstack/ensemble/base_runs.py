"""Base runs joined by id: checked for one dataset, fold assignment and label encoding, and
against each run's own dataset (items and folds), before any array is combined; probabilities
are then held as one ``(R, n, C)`` array."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, RunError
from ..runs import Run, RunRecord
from ..workspace import Workspace
from .encoding import Encoding

_LISTED = 5


def encoding_of(record: RunRecord) -> Encoding:
    """A run's label encoding (task, labels in order, positive class)."""
    return Encoding(record.task, tuple(record.labels), record.positive)


# -- base runs -------------------------------------------------------------------------------


@dataclass
class BaseSet:
    """Base runs joined by id: ``P`` is ``(R, n, C)``, ``folds`` and ``ids`` are aligned rows."""

    runs: list[Run]
    ids: list[str]
    folds: np.ndarray
    P: np.ndarray
    y: np.ndarray
    encoding: Encoding
    dataset: str
    folds_digest: str
    fold_names: tuple[str, ...] = ()  # fold labels as written; folds[i] indexes them

    @property
    def fold_labels(self) -> list[str]:
        """Each row's fold label as written (for oof.csv)."""
        names = self.fold_names or tuple(str(i) for i in range(int(self.folds.max()) + 1))
        return [names[int(f)] for f in self.folds]

    @property
    def run_ids(self) -> list[str]:
        return [r.id for r in self.runs]


def load_runs(ws: Workspace, refs: Sequence[str | int] | None, dataset: str | None) -> list[Run]:
    """The runs named by ``refs`` (ids, numbers or prefixes), else every head and imported run
    of ``dataset`` (stacks are base runs only when named)."""
    from ..runs import list_runs, load_run

    if refs:
        runs = [load_run(ws, r) for r in refs]
        run_ids = [r.id for r in runs]
        dup = sorted({i for i in run_ids if run_ids.count(i) > 1})
        if dup:
            raise ConfigError(f"--runs names {', '.join(dup)} more than once")
        return runs
    runs = [r for r in list_runs(ws, dataset=dataset) if r.record.kind != "stack"]
    runs = [r for r in runs if _sound(ws, r)]
    if not runs:
        where = f"dataset {dataset}" if dataset else f"workspace {ws.root}"
        raise RunError(f"no runs of {where} yet; fit heads first ('sslstack fit-head')")
    datasets = sorted({r.record.dataset for r in runs})
    if len(datasets) > 1:
        raise RunError(f"runs of several datasets ({', '.join(datasets)}); pick one with --data")
    return runs


def _sound(ws: Workspace, run: Run) -> bool:
    """Whether a run's out-of-fold file is whole; a damaged run is quarantined and left out
    with one warning line (runs named with --runs are refused instead, in join_runs)."""
    from ..errors import DamagedFileError
    from ..runs import damaged_note, quarantine_run

    try:
        run.check_file("oof.csv")
        if run.record.oof_sha256:
            run.oof()
    except DamagedFileError as e:
        quarantine_run(ws, run.dir, e, warn=False)
        damaged_note(run.id, e)
        return False
    return True


def join_runs(ws: Workspace, runs: Sequence[Run]) -> BaseSet:
    """Join the out-of-fold predictions of ``runs`` on item ids, after checking they agree.

    Raises:
        DataError: the runs do not share dataset, fold digest, label encoding, ids or folds; the
            message names the runs on each side.
    """
    from ..datasets import load_dataset

    if not runs:
        raise ConfigError("no runs to stack")
    _check_same(runs, "dataset", lambda m: m.dataset, "dataset")
    _check_same(runs, "fold assignment (folds digest)", lambda m: m.folds_digest, "folds")
    _check_same(runs, "label encoding (task, labels, positive)", encoding_of, "labels")
    from ..folds import fold_codes, fold_order

    enc = encoding_of(runs[0].record)
    first = _read_oof(ws, runs[0], enc)
    ids = first["id"].tolist()
    fold_names = fold_order(first["fold"])
    folds = fold_codes(first["fold"], fold_names)
    mats = [first[list(enc.labels)].to_numpy(dtype=np.float64)]
    for run in runs[1:]:
        frame = _read_oof(ws, run, enc).set_index("id")
        _check_rows(runs[0], run, ids, first["fold"].tolist(), frame)
        mats.append(frame.loc[ids, list(enc.labels)].to_numpy(dtype=np.float64))
    dataset = runs[0].record.dataset
    manifest = load_dataset(ws, dataset)
    lab = dict(zip(manifest.ids, manifest.label_lists(), strict=True))
    missing = [i for i in ids if i not in lab]
    if missing:
        raise DataError(
            f"run {runs[0].id}: ids not in dataset {dataset}: {', '.join(missing[:_LISTED])}"
        )
    y = enc.targets([lab[i] for i in ids], ids)
    return BaseSet(
        list(runs),
        ids,
        folds,
        np.stack(mats),
        y,
        enc,
        dataset,
        str(runs[0].record.folds_digest),
        tuple(fold_names),
    )


def _check_same(
    runs: Sequence[Run], what: str, get: Callable[[RunRecord], Any], short: str
) -> None:
    groups: dict[str, list[str]] = {}
    for r in runs:
        groups.setdefault(repr(get(r.record)), []).append(r.id)
    if len(groups) > 1:
        parts = " vs ".join(f"{', '.join(ids)} ({short} {value})" for value, ids in groups.items())
        raise DataError(
            f"runs do not share one {what}: {parts}; stack only runs of the same dataset, folds "
            "and labels (pick them with --runs)"
        )


def _read_oof(ws: Workspace, run: Run, enc: Encoding) -> pd.DataFrame:
    """A run's out-of-fold predictions, checked against its dataset's items and folds (and its
    saved checksum), not only against the other runs."""
    from ..errors import DamagedFileError
    from ..runs import check_oof, set_aside

    try:
        frame = run.oof()
    except DamagedFileError as e:
        raise set_aside(ws, run, e) from None
    frame["id"] = frame["id"].astype(str)
    need = ["id", "fold", *enc.labels]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise RunError(f"run {run.id}: oof.csv lacks column(s) {', '.join(missing)}")
    if frame["id"].duplicated().any():
        dup = frame.loc[frame["id"].duplicated(), "id"].tolist()[:_LISTED]
        raise RunError(f"run {run.id}: oof.csv repeats id(s) {', '.join(dup)}")
    check_oof(ws, run.record, frame)
    if not run.record.oof_sha256:
        _warn_if_partial(ws, run, frame)
    return frame


def _warn_if_partial(ws: Workspace, run: Run, frame: pd.DataFrame) -> None:
    """Runs saved before oof.csv had a checksum: say when rows of the folds are absent."""
    import warnings

    from ..errors import SslstackWarning
    from ..folds import load_folds

    folds = load_folds(ws, run.record.dataset)
    if len(frame) < len(folds.ids):
        warnings.warn(
            f"run {run.id}: oof.csv covers {len(frame)} of the {len(folds.ids)} items "
            f"of dataset {run.record.dataset} (saved without a checksum: a truncated file "
            "cannot be told from items left out at fit time)",
            SslstackWarning,
            stacklevel=2,
        )


def _check_rows(ref: Run, run: Run, ids: list[str], folds: list[str], frame: pd.DataFrame) -> None:
    a, b = ref.id, run.id
    only_a = [i for i in ids if i not in frame.index]
    known = set(ids)
    only_b = [i for i in frame.index if i not in known]
    if only_a or only_b:
        raise DataError(
            f"runs {a} and {b} do not cover the same items: only in {a}: "
            f"{', '.join(only_a[:_LISTED]) or '-'}; "
            f"only in {b}: {', '.join(only_b[:_LISTED]) or '-'}"
        )
    other = [str(v).strip() for v in frame.loc[ids, "fold"]]
    diff = [n for n, (f, o) in enumerate(zip(folds, other, strict=True)) if str(f).strip() != o]
    if len(diff):
        shown = ", ".join(f"{ids[i]} ({folds[i]} vs {other[i]})" for i in diff[:_LISTED])
        raise DataError(f"runs {a} and {b} put items in different folds: {shown}")
