"""Prediction files: validation before anything is written, and writing them atomically.

Used by ``predict``, ``blend`` and ``runs import``: every id exactly once (and, when the
expected ids are known, no id missing or unknown), probabilities finite and in [0, 1],
single-label rows summing to 1. Errors name the first offending rows by CSV line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..workspace import atomic_write_text

SUM_TOL = 1e-4
_LISTED = 5


def row_lines(frame: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> str:
    """``line N (id X)`` of the first rows; line 1 is the header."""
    idcol = "id" if "id" in frame.columns else frame.columns[0]
    return ", ".join(
        f"line {int(r) + 2} ({frame[idcol].iloc[int(r)]})" for r in list(rows)[:_LISTED]
    )


def check_ids(
    frame: pd.DataFrame, id_column: str, expected: Sequence[str] | None, source: str
) -> None:
    """Every id once; with ``expected``, no id missing and none unknown.

    Raises:
        DataError: naming the first offending rows (or the first missing ids).
    """
    if id_column not in frame.columns:
        raise DataError(f"{source}: no '{id_column}' column (columns: {', '.join(frame.columns)})")
    ids = frame[id_column].astype(str)
    dup = np.flatnonzero(ids.duplicated(keep=False).to_numpy())
    if len(dup):
        raise DataError(
            f"{source}: {ids.iloc[dup].nunique()} id(s) appear more than once: "
            f"{row_lines(frame, dup)}"
        )
    if expected is None:
        return
    want = set(expected)
    unknown = np.flatnonzero(~ids.isin(want).to_numpy())
    if len(unknown):
        raise DataError(
            f"{source}: {len(unknown)} id(s) are not in the dataset: {row_lines(frame, unknown)}"
        )
    have = set(ids)
    missing = [i for i in expected if i not in have]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} id(s) of the dataset are missing, first: "
            f"{', '.join(missing[:_LISTED])}"
        )


def check_probabilities(
    frame: pd.DataFrame, columns: Sequence[str], *, single_label: bool, source: str
) -> np.ndarray:
    """The probability block as floats, after checking it.

    Raises:
        DataError: a missing or non-numeric column, a value outside [0, 1] or not finite, or a
            single-label row not summing to 1 (first rows named).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing probability column(s) {', '.join(missing)}")
    try:
        P = frame[list(columns)].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{source}: probability columns must be numbers ({e})") from e
    bad = np.flatnonzero(~(np.isfinite(P) & (P >= 0) & (P <= 1)).all(axis=1))
    if len(bad):
        raise DataError(
            f"{source}: {len(bad)} row(s) hold probabilities that are not finite "
            f"numbers in [0, 1]: {row_lines(frame, bad)}"
        )
    if single_label:
        off = np.flatnonzero(np.abs(P.sum(axis=1) - 1.0) > SUM_TOL)
        if len(off):
            sums = ", ".join(f"{P[r].sum():.4g}" for r in off[:_LISTED])
            raise DataError(
                f"{source}: {len(off)} row(s) do not sum to 1 (single-label "
                f"probabilities): {row_lines(frame, off)} (sums {sums})"
            )
    return P


def check_labels(
    frame: pd.DataFrame, column: str, labels: Sequence[str], *, single_label: bool, source: str
) -> None:
    """Label-mode files: each row holds known labels (``a;b`` for multi-label)."""
    known = set(labels)
    vals = frame[column].astype(str).tolist()
    bad = [
        r
        for r, v in enumerate(vals)
        if (v not in known if single_label else not set(filter(None, v.split(";"))) <= known)
    ]
    if bad:
        raise DataError(f"{source}: {len(bad)} row(s) hold unknown labels: {row_lines(frame, bad)}")


def write_csv(frame: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Write a validated prediction file atomically (probabilities with 8 significant digits)."""
    path = Path(out).expanduser()
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.8g"))
    return path
