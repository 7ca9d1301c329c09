"""One fold assignment per dataset, made once and shared by every encoder, head and stack.

Saved as ``<ws>/datasets/<dataset>/folds.csv`` (id, fold) and ``folds.json`` (method, k, seed,
group_col, digest, created). Methods, looked up by name in :data:`SPLITTERS`:

- ``manifest``: the manifest's own ``fold`` column, whatever its labels (``1..5`` as ESC-50 and
  UrbanSound8K number them, ``0..4``, or names such as ``fold_a``);
- ``stratified``: StratifiedKFold over the labels;
- ``stratified-group``: StratifiedGroupKFold, so a group (speaker, recording) stays in one fold;
- ``multilabel-stratified``: iterative stratification (iterstrat); with a group column it
  stratifies groups by the union of their labels.

Items with the same content (the content hash ``extract`` records, :mod:`sslstack.content`) are
one group in every splitter, whatever their ids: a clip listed twice, or copied under another
name, never trains and validates at once.

``None`` for ``k``, ``seed`` or ``group_col`` means "whatever the saved folds use" (defaults
5, 0 and no groups when none are saved), so later commands need not repeat the flags. Asking for
other settings than the saved ones is an error: delete the folds files to start over.

Fold labels are kept as written in every output (``folds.csv``, ``oof.csv``, messages); inside,
each label is mapped to a position ``0..k-1`` in :func:`fold_order` (numbers by value, else
text), so every reader maps the same labels to the same positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..content import content_groups, duplicate_sets, item_hashes
from ..errors import ConfigError, DataError, SslstackWarning
from ..folds import Folds as Folds  # the fold contract, re-exported for the stages
from ..folds import fold_codes as fold_codes
from ..folds import fold_digest as fold_digest
from ..folds import fold_order as fold_order
from ..folds import load_folds as load_folds
from ..folds import read_folds as _load
from ..folds import save_folds as _save
from ..manifest import Manifest, split_labels
from ..registry import Registry
from ..workspace import Workspace

DEFAULT_K = 5
DEFAULT_SEED = 0


# ------------------------------------------------------------------ splitters
Splitter = Callable[[np.ndarray, np.ndarray | None, int, int], np.ndarray]


def _assign(n: int, splits: Any) -> np.ndarray:
    fold = np.full(n, -1, dtype=np.int64)
    for k, (_, val) in enumerate(splits):
        fold[val] = k
    return fold


def _stratified(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return _assign(len(y), cv.split(np.zeros(len(y)), y))


def _stratified_group(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return _assign(len(y), cv.split(np.zeros(len(y)), y, groups))


def _multilabel(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    cv = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    if groups is None:
        return _assign(len(y), cv.split(np.zeros(len(y)), y))
    names, inverse = np.unique(groups, return_inverse=True)
    gy = np.zeros((len(names), y.shape[1]), dtype=np.int8)
    np.maximum.at(gy, inverse, y)
    return _assign(len(names), cv.split(np.zeros(len(names)), gy))[inverse]


SPLITTERS: Registry[Splitter] = Registry("splitter")
SPLITTERS.register("stratified", _stratified)
SPLITTERS.register("stratified-group", _stratified_group)
SPLITTERS.register("multilabel-stratified", _multilabel)


def _method(manifest: Manifest, multilabel: bool, group_col: str | None) -> str:
    if "fold" in manifest.frame:
        return "manifest"
    if multilabel:
        return "multilabel-stratified"
    return "stratified-group" if group_col else "stratified"


# ------------------------------------------------------------------ the API
def get_folds(
    ws: Workspace,
    dataset_name: str,
    manifest: Manifest,
    *,
    k: int | None = None,
    seed: int | None = None,
    group_col: str | None = None,
    y: np.ndarray | None = None,
    content: Mapping[str, str] | None = None,
) -> Folds:
    """The dataset's fold assignment: the saved one, or a new one made and saved now
    (:func:`sslstack.folds.load_folds` reads saved folds without making any).

    Only labeled items get folds. ``y`` (class indices or a 0/1 matrix aligned with the labeled
    items) is used for stratification when given; otherwise it is read from the manifest.
    Items with the same content (``content``: id -> content hash; default: the hashes
    ``extract`` recorded) are one group in every splitter, whatever their ids; a manifest
    ``fold`` column or saved folds that split them are reported (a warning with the count).

    Raises:
        DataError: saved folds made with other settings, folds that cannot be made (too few
            items or groups).
        ConfigError: ``group_col`` is not a manifest column, or ``k`` < 2.
    """
    folder = ws.dataset_dir(dataset_name)
    labeled = (
        manifest.frame[[bool(labs) for labs in manifest.label_lists()]]
        if (manifest.has_labels)
        else manifest.frame
    )
    ids = labeled["id"].tolist()
    if content is None:
        content = item_hashes(ws, dataset_name, manifest)
    dups = duplicate_sets(ids, content)
    if (folder / "folds.json").exists():
        saved = _load(folder)
        _check_same(saved, k, seed, group_col, folder, dataset_name, ids)
        _warn_split(dups, saved, f"the saved folds of {dataset_name}", f"delete {folder}/folds.*")
        return saved
    _warn_label_clash(dups, labeled)
    folds = _make(manifest, labeled, k, seed, group_col, y, content if dups else None)
    _save(folder, folds)
    return folds


def _make(
    manifest: Manifest,
    labeled: pd.DataFrame,
    k: int | None,
    seed: int | None,
    group_col: str | None,
    y: np.ndarray | None,
    content: Mapping[str, str] | None = None,
) -> Folds:
    asked_k = k
    k = DEFAULT_K if k is None else k
    seed = DEFAULT_SEED if seed is None else seed
    ids = labeled["id"].tolist()
    if group_col is not None and group_col not in labeled:
        cols = [c for c in labeled.columns if c not in ("id", "path", "label", "_line")]
        raise ConfigError(
            f"--group-col {group_col!r}: no such manifest column "
            f"(columns: {', '.join(cols) or 'none'})"
        )
    lists = [split_labels(v) for v in labeled.get("label", [])]
    multilabel = any(len(labs) > 1 for labs in lists) or (y is not None and y.ndim == 2)
    method = _method(manifest, multilabel, group_col)
    if method == "manifest":
        written = [str(v).strip() for v in labeled["fold"]]
        _check_no_empty_fold(manifest, labeled, written)
        names = fold_order(written)
        fold = fold_codes(written, names)
        k = len(names)
        if k < 2:
            raise DataError(
                f"{manifest.source}: the 'fold' column holds one fold ({names[0]}) for every "
                "labeled item; cross-validation needs at least two. Fix the column, or drop it "
                "to let sslstack make folds"
            )
        _check_manifest_folds(manifest, labeled, fold, k, asked_k, group_col)
        digest = fold_digest(ids, written)
        made = Folds(tuple(ids), fold, k, method, None, None, digest, tuple(names))
        dups = duplicate_sets(ids, content or {})
        _warn_split(dups, made, f"{manifest.source}'s 'fold' column", "fix the column")
        return made
    if k < 2:
        raise ConfigError(f"--folds {k}: use at least 2 folds")
    if y is None:
        y = _labels_for_split(lists, multilabel)
    groups = labeled[group_col].astype(str).to_numpy() if group_col else None
    units = None
    if content:
        units = content_groups(ids, content, groups)
        warnings.warn(
            f"{len(duplicate_sets(ids, content))} set(s) of items share their content under "
            "other ids; each set is kept in one fold",
            SslstackWarning,
            stacklevel=3,
        )
    _check_feasible(ids, groups if units is None else units, k, group_col)
    fold = _split(method, y, groups, k, seed, lists, units)
    if (fold < 0).any() or len(np.unique(fold)) != k:
        raise DataError(
            f"could not make {k} non-empty folds over {len(ids)} items; use fewer --folds"
        )
    return Folds(tuple(ids), fold, k, method, seed, group_col, fold_digest(ids, fold))


def _split(
    method: str,
    y: np.ndarray,
    groups: np.ndarray | None,
    k: int,
    seed: int,
    lists: list[list[str]],
    units: np.ndarray | None = None,
) -> np.ndarray:
    """The splitter's folds; its refusal of small classes becomes one line naming them.

    ``units`` (a group code per item, see :func:`content_groups`) keeps each unit in one fold:
    the stratified splitter splits one representative per unit, the grouped ones take the units
    as their groups."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            if units is None:
                return SPLITTERS[method](y, groups, k, seed)
            if method == "stratified":
                first = np.unique(units, return_index=True)[1]
                return SPLITTERS[method](y[first], None, k, seed)[units]
            return SPLITTERS[method](y, units.astype(str), k, seed)
        except ValueError as e:
            small = _small_classes(lists, k)
            if not small:
                raise DataError(f"could not make {k} folds: {e}; use fewer --folds") from e
            raise DataError(
                f"{len(small)} class(es) have fewer items than the {k} folds: "
                f"{', '.join(f'{c} ({n})' for c, n in small[:10])}; use --folds "
                f"{max(2, small[0][1])} or fewer, or merge or drop these classes"
            ) from e


def _small_classes(lists: list[list[str]], k: int) -> list[tuple[str, int]]:
    """Classes with fewer than ``k`` items, smallest first."""
    counts = pd.Series([lab for labs in lists for lab in labs]).value_counts()
    small = counts[counts < k].sort_values(kind="stable")
    return [(str(c), int(n)) for c, n in small.items()]


def _labels_for_split(lists: list[list[str]], multilabel: bool) -> np.ndarray:
    names = sorted({lab for labs in lists for lab in labs})
    index = {n: i for i, n in enumerate(names)}
    if multilabel:
        y = np.zeros((len(lists), len(names)), dtype=np.int8)
        for r, labs in enumerate(lists):
            y[r, [index[lab] for lab in labs]] = 1
        return y
    return np.array([index[labs[0]] if labs else 0 for labs in lists], dtype=np.int64)


def _check_feasible(
    ids: list[str], groups: np.ndarray | None, k: int, group_col: str | None
) -> None:
    if len(ids) < k:
        raise DataError(f"{len(ids)} labeled items cannot fill {k} folds; use fewer --folds")
    if groups is not None and len(set(groups)) < k:
        what = f"--group-col {group_col}" if group_col else "items with distinct content"
        raise DataError(
            f"{what}: {len(set(groups))} distinct groups cannot fill {k} folds; use fewer --folds"
        )


def _warn_split(dups: list[list[str]], folds: Folds, where: str, fix: str) -> None:
    """One warning when sets of items with the same content lie in more than one fold."""
    pos = {i: n for n, i in enumerate(folds.ids)}
    split = [s for s in dups if len({int(folds.fold[pos[i]]) for i in s if i in pos}) > 1]
    if split:
        shown = ", ".join("=".join(s[:2]) for s in split[:3])
        warnings.warn(
            f"{where} puts {len(split)} set(s) of items with the same content in more than one "
            f"fold ({shown}); the same audio trains and validates — {fix}",
            SslstackWarning,
            stacklevel=3,
        )


def _warn_label_clash(dups: list[list[str]], labeled: pd.DataFrame) -> None:
    """One warning for sets of items with the same content and different labels."""
    if not dups or "label" not in labeled:
        return
    values = (tuple(sorted(split_labels(v))) for v in labeled["label"])
    label = dict(zip(labeled["id"], values, strict=True))
    clash = [s for s in dups if len({label.get(i) for i in s}) > 1]
    if clash:
        shown = "; ".join(
            ", ".join(f"{i} ({';'.join(label.get(i) or ())})" for i in s[:2]) for s in clash[:3]
        )
        warnings.warn(
            f"{len(clash)} set(s) of items with the same content have different labels "
            f"({shown}); fix the labels or keep one item of each",
            SslstackWarning,
            stacklevel=3,
        )


def _check_no_empty_fold(manifest: Manifest, labeled: pd.DataFrame, written: list[str]) -> None:
    empty = [n for n, v in enumerate(written) if v == ""]
    if not empty:
        return
    where = labeled["_line"].tolist() if "_line" in labeled else None
    shown = ", ".join(
        f"line {where[n]}" if where else str(labeled["id"].iloc[n]) for n in empty[:5]
    )
    raise DataError(
        f"{manifest.source}: {len(empty)} labeled item(s) have an empty 'fold' ({shown}); give "
        "every labeled item a fold, or drop the column to let sslstack make folds"
    )


def _check_manifest_folds(
    manifest: Manifest,
    labeled: pd.DataFrame,
    fold: np.ndarray,
    k: int,
    asked_k: int | None,
    group_col: str | None,
) -> None:
    """Flags that would make other folds must agree with the manifest's own 'fold' column."""
    if asked_k is not None and asked_k != k:
        raise ConfigError(
            f"--folds {asked_k}: {manifest.source} has a 'fold' column with {k} folds, which "
            "fixes the folds; drop --folds or the column"
        )
    if group_col is None:
        return
    groups = labeled[group_col].astype(str).to_numpy()
    per_group = pd.Series(fold).groupby(groups).nunique()
    split = per_group[per_group > 1]
    if len(split):
        raise DataError(
            f"--group-col {group_col}: {manifest.source}'s 'fold' column puts {len(split)} "
            f"group(s) in more than one fold ({', '.join(map(str, split.index[:5]))}); items of "
            "one group in training and validation leak. Fix the column, or drop it to let "
            "sslstack make grouped folds"
        )


def _check_same(
    saved: Folds,
    k: int | None,
    seed: int | None,
    group_col: str | None,
    folder: Any,
    dataset_name: str,
    ids: list[str],
) -> None:
    asked = {"k": k, "seed": seed, "group_col": group_col}
    have = saved.settings()
    clash = {
        name: value
        for name, value in asked.items()
        if value is not None and saved.method != "manifest" and have[name] != value
    }
    if clash:
        want = ", ".join(f"{n}={v}" for n, v in clash.items())
        got = ", ".join(f"{n}={have[n]}" for n in clash)
        raise DataError(
            f"dataset {dataset_name} already has folds ({saved.method}, k={saved.k}, "
            f"seed={saved.seed}, group_col={saved.group_col}); this command asks for {want} "
            f"(saved: {got}). Every run of a dataset shares its folds: repeat the saved settings, "
            f"or delete {folder}/folds.csv and folds.json to start over"
        )
    if set(ids) != set(saved.ids):
        raise DataError(
            f"dataset {dataset_name}: the saved folds cover {len(saved.ids)} items but the "
            f"manifest has {len(ids)} labeled items; delete {folder}/folds.csv and folds.json "
            "to make new folds"
        )
