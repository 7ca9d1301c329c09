"""The fold contract: a dataset's one fold assignment, as saved and as every stage reads it.

``<ws>/datasets/<dataset>/folds.csv`` (id, fold label as written) and ``folds.json`` (method, k,
seed, group_col, digest, label order). Labels are kept as written in every output; inside, each
is a position ``0..k-1`` given by :func:`fold_order` (numbers by value, else text). How folds are
*made* (splitters, checks against a manifest) is :mod:`sslstack.classify.folds`; this module
sits below the runs and the stages, which only read folds.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DamagedFileError, DataError
from .workspace import Workspace, atomic_write_json, atomic_write_text, read_csv, read_json


def fold_order(labels: Sequence[Any]) -> list[str]:
    """The distinct fold labels in their position order: by number when every label is an
    integer (``1, 2, 10``), else as text."""
    names = sorted({str(v).strip() for v in labels})
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return names


def fold_codes(labels: Sequence[Any], names: Sequence[str] | None = None) -> np.ndarray:
    """Positions ``0..k-1`` of fold labels as written (``names``: the order, default
    :func:`fold_order` of ``labels``).

    Raises:
        DataError: a label that is not one of ``names``.
    """
    order = list(names) if names is not None else fold_order(labels)
    pos = {n: i for i, n in enumerate(order)}
    text = [str(v).strip() for v in labels]
    unknown = sorted({t for t in text if t not in pos})
    if unknown:
        raise DataError(
            f"fold label(s) {', '.join(unknown[:5])} are not among the dataset's folds "
            f"({', '.join(order)})"
        )
    return np.array([pos[t] for t in text], dtype=np.int64)


@dataclass(frozen=True)
class Folds:
    """The fold of each item: ``fold[i]`` (a position 0..k-1) is the fold of ``ids[i]``, and
    ``names[fold[i]]`` its label as written (``"1"``, ``"fold_a"``; ``"0".."k-1"`` for folds
    sslstack made)."""

    ids: tuple[str, ...]
    fold: np.ndarray
    k: int
    method: str
    seed: int | None
    group_col: str | None
    digest: str
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.names:
            object.__setattr__(self, "names", tuple(str(i) for i in range(self.k)))

    def label_of(self, ids: Sequence[str]) -> list[str]:
        """Fold labels as written of ``ids`` (for files a user reads: oof.csv, folds.csv)."""
        return [self.names[int(f)] for f in self.fold_of(ids)]

    @property
    def labels(self) -> list[str]:
        """Fold label as written of every item, in ``ids`` order."""
        return [self.names[int(f)] for f in self.fold]

    def fold_of(self, ids: Sequence[str]) -> np.ndarray:
        """Folds of ``ids``.

        Raises:
            DataError: ids that the fold assignment does not hold (the first are named).
        """
        pos = {i: n for n, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(
                f"{len(missing)} id(s) have no fold (first: {', '.join(missing[:5])}); they are "
                "not in the dataset the folds were made for"
            )
        return self.fold[[pos[i] for i in ids]]

    def splits(self, ids: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train_idx, val_idx)`` per fold, as positions into ``ids`` (default: ``self.ids``)."""
        f = self.fold if ids is None else self.fold_of(ids)
        return [(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in range(self.k)]

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k, "seed": self.seed, "group_col": self.group_col}


def fold_digest(ids: Sequence[str], fold: Sequence[Any] | np.ndarray) -> str:
    """sha1 over the sorted ``id:fold`` lines (fold labels as written), 12 hex characters."""
    lines = sorted(f"{i}:{_text(f)}" for i, f in zip(ids, fold, strict=True))
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()[:12]


def _text(label: Any) -> str:
    if isinstance(label, (int, np.integer)):
        return str(int(label))
    return str(label).strip()


def save_folds(folder: Any, folds: Folds) -> None:
    frame = pd.DataFrame({"id": list(folds.ids), "fold": folds.labels})
    atomic_write_text(folder / "folds.csv", frame.to_csv(index=False))
    atomic_write_json(
        folder / "folds.json",
        {
            **folds.settings(),
            "digest": folds.digest,
            "names": list(folds.names),
            "items": len(folds.ids),
            "created": time.time(),
        },
        checksum=True,
    )


def read_folds(folder: Any) -> Folds:
    """The folds saved in a dataset's folder; damaged or edited ones are rebuilt from a run that
    used them (its checksummed out-of-fold file reproduces their digest) when there is one.

    Raises:
        DataError: damaged (or edited) and no run to rebuild them from; the message names the
            file and what to do.
    """
    try:
        return _read_folds(folder)
    except DataError as e:
        healed = _recover_folds(Workspace(folder.parent.parent), folder.name, folder, e)
        if healed is None:
            raise
        return healed


def _read_folds(folder: Any) -> Folds:
    advice = "restore it, or delete folds.csv and folds.json to make new folds (runs made "
    advice += "with the old folds can then not be stacked with new ones)"
    meta = read_json(folder / "folds.json", advice=advice)
    frame = read_csv(folder / "folds.csv", advice=advice, dtype=str, keep_default_na=False)
    try:
        ids = frame["id"].tolist()
        written = [v.strip() for v in frame["fold"]]
        digest = fold_digest(ids, written)
        k, method, want = int(meta["k"]), str(meta["method"]), str(meta["digest"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DamagedFileError(folder / "folds.json", f"damaged ({e!r})", advice) from None
    if digest != want:
        raise DataError(
            f"{folder}/folds.csv does not match the digest in folds.json ({digest} != "
            f"{meta['digest']}); it was edited or damaged — restore it or delete both files"
        )
    names = [str(n) for n in meta.get("names") or fold_order(written)]
    return Folds(
        tuple(ids),
        fold_codes(written, names),
        k,
        method,
        meta.get("seed"),
        meta.get("group_col"),
        digest,
        tuple(names),
    )


def load_folds(ws: Workspace, dataset_name: str) -> Folds:
    """The saved folds of a dataset.

    Raises:
        DataError: the dataset has no folds yet.
    """
    folder = ws.dataset_dir(dataset_name)
    if not (folder / "folds.json").exists():
        raise DataError(f"dataset {dataset_name} has no folds yet; run 'sslstack fit-head' first")
    return read_folds(folder)


def _recover_folds(ws: Workspace, dataset: str, folder: Any, error: Exception) -> Folds | None:
    """The folds rebuilt from a run of the dataset whose checksummed out-of-fold file covers
    every item and whose fold digest it reproduces; the damaged files are set aside."""
    import warnings

    from .errors import SslstackWarning
    from .runs import list_runs
    from .workspace import quarantine

    for run in list_runs(ws, dataset, quiet=True):
        if not run.record.oof_sha256 or not run.record.folds_digest:
            continue  # only what a checksum vouches for
        try:
            frame = run.oof()
        except DataError:
            continue
        ids = frame["id"].astype(str).tolist()
        written = [_text(v) for v in frame["fold"]]
        digest = fold_digest(ids, written)
        if digest != run.record.folds_digest:
            continue
        old = _parsable(folder / "folds.json")
        names = fold_order(written)
        same_k = old.get("k") == len(names)
        folds = Folds(
            tuple(ids),
            fold_codes(written, names),
            len(names),
            str(old.get("method")) if same_k else "recovered",
            old.get("seed") if same_k else None,
            old.get("group_col") if same_k else None,
            digest,
            tuple(names),
        )
        for name in ("folds.csv", "folds.json"):
            quarantine(folder / name)
        save_folds(folder, folds)
        warnings.warn(
            f"folds of dataset {dataset} were damaged ({error}); rebuilt from run {run.id}'s "
            f"out-of-fold predictions (digest {digest} reproduced); the damaged files were "
            "set aside",
            SslstackWarning,
            stacklevel=3,
        )
        return folds
    return None  # no run vouches for them: the error stands (restore, or make new folds)


def _parsable(path: Any) -> dict[str, Any]:
    import json

    try:
        obj = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


__all__ = ["Folds", "fold_codes", "fold_digest", "fold_order", "load_folds"]
