"""``blend``: average submission files when no out-of-fold predictions exist.

Each file: an id column (``id``, else the first column) and the same probability columns.
Files are joined by id (the first file's row order is kept), checked as ``predict`` checks its
output, averaged with weights (or rank-averaged per column), and the result is checked again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .methods import rank_columns
from .submission import SUM_TOL, check_ids, check_probabilities, write_csv


def blend(
    files: Sequence[str | os.PathLike[str]],
    *,
    weights: Sequence[float] | None = None,
    rank: bool = False,
    out: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
) -> dict[str, Any]:
    """Weighted (rank) average of submission files.

    Args:
        files: two or more CSVs with an id column and the same probability columns.
        weights: one non-negative weight per file (normalized to sum 1; default equal).
        rank: average per-column ranks (scaled to (0, 1]) instead of probabilities.
        out: CSV to write.
        id_column: the id column's name (default ``id``, else each file's first column).

    Returns:
        ``{"out", "items", "columns", "weights", "rank", "single_label", "frame"}``.

    Raises:
        ConfigError: fewer than two files, or weights that do not fit.
        DataError: files that do not share ids or columns, or invalid probabilities.
    """
    if len(files) < 2:
        raise ConfigError("blend needs at least two files")
    w = _weights(weights, len(files))
    frames = [_read(f, id_column) for f in files]
    idcol = frames[0].columns[0]
    cols = list(frames[0].columns[1:])
    ids = frames[0][idcol].tolist()
    mats = []
    for f, frame in zip(files, frames, strict=True):
        other = [c for c in frame.columns[1:]]
        if sorted(other) != sorted(cols):
            raise DataError(
                f"{f}: columns {', '.join(other)} differ from {files[0]}'s ({', '.join(cols)})"
            )
        check_ids(frame, frame.columns[0], ids, str(f))
        P = check_probabilities(frame, cols, single_label=False, source=str(f))
        order = pd.Index(frame[frame.columns[0]]).get_indexer(ids)
        mats.append(P[order])
    single = all(np.all(np.abs(P.sum(axis=1) - 1) <= SUM_TOL) for P in mats)
    if single:
        for f, frame in zip(files, frames, strict=True):
            check_probabilities(frame, cols, single_label=True, source=str(f))
    blended = _combine(np.stack(mats), w, rank, single)
    result = pd.DataFrame({idcol: ids})
    for c, name in enumerate(cols):
        result[name] = blended[:, c]
    source = str(out or "blend")
    check_ids(result, idcol, ids, source)
    check_probabilities(result, cols, single_label=single, source=source)
    path = write_csv(result, out) if out is not None else None
    return {
        "out": None if path is None else str(path),
        "items": len(result),
        "columns": cols,
        "weights": w.tolist(),
        "rank": rank,
        "single_label": single,
        "frame": result,
    }


def _weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(list(weights), dtype=np.float64)
    if len(w) != n:
        raise ConfigError(f"--weights has {len(w)} value(s) for {n} files; give one per file")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(
            f"--weights {','.join(map(str, weights))}: use non-negative numbers "
            "that are not all zero"
        )
    return w / w.sum()


def _read(path: str | os.PathLike[str], id_column: str | None) -> pd.DataFrame:
    src = Path(path).expanduser()
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    try:
        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{src}: not a readable CSV ({e})") from e
    idcol = id_column or ("id" if "id" in frame.columns else frame.columns[0])
    if idcol not in frame.columns:
        raise DataError(f"{src}: no '{idcol}' column (columns: {', '.join(frame.columns)})")
    if len(frame.columns) < 2:
        raise DataError(f"{src}: needs an id column and probability columns")
    return frame[[idcol, *[c for c in frame.columns if c != idcol]]]


def _combine(P: np.ndarray, w: np.ndarray, rank: bool, single: bool) -> np.ndarray:
    if not rank:
        avg = np.tensordot(w, P, axes=1)
    elif single and P.shape[2] == 2:  # binary: rank the second column, the first is 1 - it
        pos = np.tensordot(w, np.stack([rank_columns(p[:, [1]])[:, 0] for p in P]), axes=1)
        avg = np.column_stack([1 - pos, pos])
    else:
        avg = np.tensordot(w, np.stack([rank_columns(p) for p in P]), axes=1)
    if single:
        avg = avg / avg.sum(axis=1, keepdims=True)
    return np.clip(avg, 0.0, 1.0)
