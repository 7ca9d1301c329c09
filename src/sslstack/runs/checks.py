"""What a run must satisfy before it is written or read: out-of-fold predictions that line up
with the dataset's folds, finite numbers, and names that stay inside the workspace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DamagedFileError, DataError
from ..workspace import Workspace, confined
from .record import RunRecord

_LISTED = 5
_PLAIN = re.compile(r"[A-Za-z0-9._-]+")


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


def check_oof(ws: Workspace, record: RunRecord, oof: pd.DataFrame) -> None:
    """Refuse out-of-fold predictions that do not line up with the dataset's folds.

    Checks: columns are ``id``, ``fold`` and the labels in order; ids are unique and belong to
    the dataset's fold assignment; each row's fold is the saved fold of its id; probabilities
    are finite numbers in [0, 1].

    Raises:
        DataError: naming the first offending ids or columns.
    """
    from ..folds import load_folds

    rid, labels = record.id, list(record.labels)
    cols = [str(c) for c in oof.columns]
    if cols != ["id", "fold", *labels]:
        raise DataError(
            f"run {rid}: out-of-fold columns are {cols[:8]}; expected id, fold, then one "
            f"column per label in label order ({', '.join(labels[:8])})"
        )
    ids = oof["id"].astype(str)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise DataError(
            f"run {rid}: {len(dup)} duplicate id(s) (first: {', '.join(dup[:_LISTED])})"
        )
    folds = load_folds(ws, record.dataset)
    if record.folds_digest and record.folds_digest != folds.digest:
        raise DataError(
            f"run {rid}: made with folds {record.folds_digest}, but dataset "
            f"{record.dataset} has folds {folds.digest}"
        )
    pos = {i: n for n, i in enumerate(folds.ids)}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise DataError(
            f"run {rid}: {len(unknown)} id(s) are not in dataset {record.dataset} "
            f"(first: {', '.join(unknown[:_LISTED])})"
        )
    saved = np.array(folds.label_of(ids.tolist()), dtype=object)
    written = np.array([_fold_text(v) for v in oof["fold"]], dtype=object)
    bad = np.flatnonzero(saved != written)
    if len(bad):
        first = ", ".join(
            f"{ids.iloc[i]} (fold {oof['fold'].iloc[i]} != {saved[i]})" for i in bad[:_LISTED]
        )
        raise DataError(f"run {rid}: {len(bad)} row(s) disagree with the dataset's folds: {first}")
    _check_probabilities(rid, ids, oof[labels].to_numpy(dtype=np.float64))


def _check_probabilities(rid: str, ids: pd.Series, proba: np.ndarray) -> None:
    bad = ~np.isfinite(proba).all(axis=1) | (proba < 0).any(axis=1) | (proba > 1 + 1e-6).any(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"run {rid}: probabilities must be finite and in [0, 1] (first bad ids: "
            f"{', '.join(ids.iloc[rows[:_LISTED]])})"
        )


def _fold_text(value: Any) -> str:
    """A fold label as written in a file (``3`` and ``"3"`` alike)."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


def check_names(path: Path, record: RunRecord) -> None:
    """Names in a record that become paths (dataset, store, models) must be plain names.

    Raises:
        DamagedFileError: naming ``path`` (the run's ``run.json``).
    """
    fc = record.feature_choice
    for name in (record.dataset, fc.store if fc is not None else None):
        if name is not None and not (_PLAIN.fullmatch(str(name)) and str(name) not in ("..",)):
            raise DamagedFileError(
                path,
                f"refused the name {str(name)!r}: a run may only name a dataset or store of "
                "its workspace",
                "the run record was edited; refit the run (or remove its folder)",
            )
    for name in record.models:
        confined(path.parent / "models", str(name))
