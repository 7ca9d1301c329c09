"""A head's problem, set up once and shared by ``fit_head`` and ``probe``: the dataset, its one
fold assignment, the labels as targets, and a reader of the store's feature choices."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..cache import Store
from ..datasets import item_hashes, resolve_dataset
from ..embeddings import find_store, store_model
from ..errors import DataError
from ..manifest import Manifest
from ..parsing import parse_csv_list, parse_int_list
from ..workspace import Workspace
from .features import FeatureReader
from .folds import Folds, get_folds
from .labels import LabelEncoding, check_label_counts, infer_encoding


@dataclass
class Problem:
    """Everything a trial needs, prepared once."""

    ws: Workspace
    dataset: str
    store: Store
    enc: LabelEncoding
    ids: list[str]
    y: np.ndarray
    folds: Folds
    splits: list[tuple[np.ndarray, np.ndarray]]
    groups: np.ndarray | None
    reader: FeatureReader
    warnings: list[str]


class ProblemSpec(Protocol):
    """What a problem is made from: the fields ``FitConfig`` and ``ProbeConfig`` share."""

    @property
    def model(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def task(self) -> str | None: ...
    @property
    def positive(self) -> str | None: ...
    @property
    def group_col(self) -> str | None: ...
    @property
    def folds(self) -> int | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def store(self) -> str | None: ...


def prepare_problem(ws: Workspace, spec: ProblemSpec) -> Problem:
    """The labeled items of ``spec.data`` with their embeddings in ``spec.model``'s store, the
    dataset's folds (made now when it has none), and notes on what was left out.

    Raises:
        DataError: no labels, items without embeddings, folds that cannot be made.
    """
    dataset, manifest = resolve_dataset(ws, spec.data)
    if not manifest.has_labels:
        raise DataError(
            f"dataset {dataset} ({manifest.source}) has no labels; heads need a 'label' or "
            "'labels' column (name another with 'sslstack extract --label-col NAME')"
        )
    notes: list[str] = []
    frame = manifest.frame
    lists = manifest.label_lists()
    labeled = np.array([bool(labs) for labs in lists])
    if not labeled.all():
        notes.append(f"{int((~labeled).sum())} item(s) without a label are left out")
    enc = infer_encoding(
        [labs for labs, ok in zip(lists, labeled, strict=True) if ok], spec.task, spec.positive
    )
    st = find_store(spec.model, ws, store=spec.store)
    ids = frame["id"][labeled].tolist()
    hashes = item_hashes(ws, dataset)
    have = st.index
    failed = {i for i in ids if hashes[i] not in have and hashes[i] in st.failures}
    missing = [i for i in ids if hashes[i] not in have and i not in failed]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(ids)} labeled item(s) of {dataset} have no embeddings in "
            f"store {st.path.name} (first: {', '.join(missing[:5])}); run 'sslstack extract "
            f"--data {manifest.source} --model {store_model(st)}' first"
        )
    gone = [i for i in ids if i in failed]
    if gone:
        notes.append(f"{len(gone)} item(s) whose extraction failed are left out (first: {gone[0]})")
    sub = Manifest(
        frame=frame[labeled].reset_index(drop=True), source=manifest.source, name=manifest.name
    )
    y_all = enc.encode([labs for labs, ok in zip(lists, labeled, strict=True) if ok])
    check_label_counts(enc, y_all)
    # the seed makes new folds; saved folds are reused whatever the seed of this fit
    fresh = not (ws.dataset_dir(dataset) / "folds.json").exists()
    seed = spec.seed if fresh else None
    fo = get_folds(ws, dataset, sub, k=spec.folds, seed=seed, group_col=spec.group_col, y=y_all)
    if gone:
        keep = np.array([i not in failed for i in ids])
        ids, y_all = [i for i, k in zip(ids, keep, strict=True) if k], y_all[keep]
    check_label_counts(enc, y_all)
    splits = fo.splits(ids)
    notes += _check_splits(enc, y_all, splits, fo.names)
    gcol = fo.group_col
    groups = None
    if gcol is not None:
        gmap = dict(zip(frame["id"], frame[gcol].astype(str), strict=True))
        groups = np.array([gmap[i] for i in ids])
    reader = FeatureReader(st, [hashes[i] for i in ids])
    return Problem(ws, dataset, st, enc, ids, y_all, fo, splits, groups, reader, notes)


def _check_splits(
    enc: LabelEncoding,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    fold_names: Sequence[str] = (),
) -> list[str]:
    """Count labels that a fold validates on but never trains on (warnings)."""
    notes = []
    for k, (tr, va) in enumerate(splits):
        if enc.task == "multilabel":
            absent = np.flatnonzero((y[va].sum(axis=0) > 0) & (y[tr].sum(axis=0) == 0))
            n_items = int(y[va][:, absent].any(axis=1).sum()) if len(absent) else 0
        else:
            absent = np.setdiff1d(np.unique(y[va]), np.unique(y[tr]))
            n_items = int(np.isin(y[va], absent).sum())
        if len(absent):
            names = ", ".join(enc.labels[i] for i in absent[:5])
            notes.append(
                f"fold {fold_names[k] if fold_names else k}: {len(absent)} label(s) ({names}) "
                f"occur in validation ({n_items} items) but not in training; they get "
                "probability 0 there"
            )
    return notes


def cores() -> int:
    """CPU cores this process may run on: the default threads of a head's cross-validation.

    They are spent on folds side by side first (``cv.fold_workers``), one thread a fit, and only
    then on threads within a fit: on small data OpenMP/BLAS threads spin at their barriers and
    cost more than they save (a busy 2-core machine ran a 50-round 10-class XGBoost fit on
    300 x 64 in 1.2-1.6 s on one thread and 45-49 s on two, docs/classify.md), while folds are
    independent."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def int_list(layer: Sequence[int] | str | int | None) -> list[int] | None:
    """``layer=`` as given to fit_head / probe: an int, ``"6-12"``-style text, or ints."""
    if layer is None or isinstance(layer, int):
        return None if layer is None else [layer]
    if isinstance(layer, str):
        return parse_int_list(layer, "--layers")
    return [int(v) for v in layer]


def str_list(pool: Sequence[str] | str | None) -> list[str] | None:
    """``pool=`` as given: ``"mean,std"``-style text or names."""
    return parse_csv_list(pool) if isinstance(pool, str) else None if pool is None else list(pool)
