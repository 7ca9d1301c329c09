"""Window-level heads: fit on per-window vectors with their clip's label, score the clip.

A windowed store (``sslstack extract --window S --hop S``) holds each window's pooled vectors
beside the clip-level aggregates. ``fit-head --windows mean|max`` trains the head on the windows
(each with its clip's label), predicts each window, and aggregates a clip's window probabilities
by their mean or their element-wise max (single-label rows renormalized). The folds are the
dataset's: a window belongs to its clip's fold, so the windows of one clip never straddle a
training and a validation part. (The early-stopping split inside a training part is drawn over
windows, stratified by label: windows of one clip may sit on both sides of it. That split only
chooses the number of rounds; the validation fold stays unseen.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cache import Store
from ..errors import ConfigError, DataError
from .cv import CVOptions, CVOutcome, Targets, cross_validate
from .features import FeatureChoice
from .heads import FitContext, Head
from .labels import LabelEncoding
from .metrics import Metric

AGGREGATES = ("mean", "max")


@dataclass
class WindowData:
    """Per-window features and the row (in the problem's ids) of each window's clip."""

    x: np.ndarray  # (W, D) float32
    owner: np.ndarray  # (W,) int


def check_windows(how: str | None, store: Store) -> str | None:
    """Validate ``--windows`` against the store.

    Raises:
        ConfigError: an unknown aggregate, or a store without windows.
    """
    if how is None:
        return None
    if how not in AGGREGATES:
        raise ConfigError(f"--windows {how}: choose {' or '.join(AGGREGATES)}")
    if store.key.window is None:
        raise ConfigError(
            f"--windows {how}: store {store.path.name} holds no windows; extract with "
            "--window S (and --hop S) first"
        )
    return how


def window_matrix(store: Store, keys: Sequence[str], choice: FeatureChoice) -> WindowData:
    """The windows of the items of content hashes ``keys`` under ``choice`` (a layer range is
    averaged, blocks concatenated); ``owner`` gives each window's position in ``keys`` (an item
    listed twice, under two ids, owns its windows twice).

    Raises:
        DataError: an item without a window.
    """
    uniq = list(dict.fromkeys(keys))
    owner: np.ndarray | None = None
    take: np.ndarray | None = None
    parts = []
    for layers, pool in choice.blocks():
        mats = []
        for la in layers:
            wkeys, _, vecs = store.read_windows(la, pool, uniq)
            own, rows = _window_rows(keys, wkeys)
            if owner is None or take is None:
                owner, take = own, rows
            elif not (np.array_equal(owner, own) and np.array_equal(take, rows)):
                raise DataError(f"store {store.path.name}: windows differ between layers/pools")
            mats.append(vecs[rows])
        parts.append(mats[0] if len(mats) == 1 else np.mean(mats, axis=0))
    assert owner is not None
    lacking = np.setdiff1d(np.arange(len(keys)), owner)
    if len(lacking):
        raise DataError(
            f"{len(lacking)} item(s) have no window in store {store.path.name} (first content: "
            f"{keys[int(lacking[0])]}); extract them again with the store's --window"
        )
    x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return WindowData(np.ascontiguousarray(x, dtype=np.float32), owner)


def _window_rows(keys: Sequence[str], wkeys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each position of ``keys``, the rows of its content's windows in ``wkeys``:
    ``(owner position per window, row in the read windows)``."""
    rows_of: dict[str, list[int]] = {}
    for row, k in enumerate(wkeys):
        rows_of.setdefault(k, []).append(row)
    owner, take = [], []
    for pos, k in enumerate(keys):
        rows = rows_of.get(k, [])
        owner += [pos] * len(rows)
        take += rows
    return np.array(owner, dtype=np.int64), np.array(take, dtype=np.int64)


def aggregate(
    proba: np.ndarray, owner: np.ndarray, n: int, how: str, enc: LabelEncoding
) -> np.ndarray:
    """Per clip: the mean or the element-wise max of its windows' probabilities."""
    if how == "mean":
        out = np.zeros((n, proba.shape[1]))
        np.add.at(out, owner, proba)
        return out / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]
    out = np.full((n, proba.shape[1]), -np.inf)
    np.maximum.at(out, owner, proba)
    out[~np.isfinite(out)] = 0.0
    if enc.task != "multilabel":
        out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    return out


def cross_validate_windows(
    head: Head,
    wd: WindowData,
    targets: Targets,
    metric: Metric,
    params: dict[str, Any],
    ctx: FitContext,
    how: str,
    opts: CVOptions = CVOptions(),
) -> CVOutcome:
    """:func:`cross_validate` on windows under the clips' folds (``targets``), scored per clip
    after aggregating each clip's window probabilities by ``how`` (``mean`` or ``max``).

    The pruner (``opts.report``) sees window-level running means; the outcome's out-of-fold
    probabilities and fold scores are the clips'.
    """
    y, enc = targets.y, targets.enc
    wsplits = [
        (np.flatnonzero(np.isin(wd.owner, tr)), np.flatnonzero(np.isin(wd.owner, va)))
        for tr, va in targets.splits
    ]
    # an inner early-stopping split that holds out groups holds out whole clips at least
    groups = targets.groups[wd.owner] if targets.groups is not None else wd.owner
    wtargets = Targets(y[wd.owner], enc, wsplits, groups)
    out = cross_validate(head, wd.x, wtargets, metric, params, ctx, opts)
    oof = aggregate(out.oof, wd.owner, len(y), how, enc)
    scores = []
    for _, va in targets.splits:
        try:
            scores.append(metric(y[va], oof[va], enc.task, enc.positive_index))
        except ValueError:
            scores.append(float("nan"))
    return CVOutcome(scores, oof, out.models, out.es_rounds, out.cut)
