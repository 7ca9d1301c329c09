"""Cross-validation of one configuration over the shared folds.

For each fold: carve an early-stopping set out of the training part (heads that stop early),
fit the preprocessing (standardization, PCA) on what remains, fit the head, predict the
validation part. The validation part is used for nothing but its predictions, so the fold
scores are honest.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import DataError
from .budget import BudgetExceeded
from .heads import FitContext, Head
from .labels import LabelEncoding
from .metrics import Metric
from .preprocess import Preprocessor

ES_FRACTION = 0.15


@dataclass
class FoldModel:
    """A fitted fold: preprocessing (with the column map in ``prep.extra``) and the model."""

    prep: Preprocessor
    model: Any
    es_rounds: int | None = None  # rounds early stopping chose on the inner split, if any
    cut: bool = False  # the budget's end of rounds, not early stopping, ended its boosting


@dataclass(frozen=True)
class Targets:
    """The labels under the folds: what every cross-validation of one problem shares."""

    y: np.ndarray
    enc: LabelEncoding
    splits: list[tuple[np.ndarray, np.ndarray]]
    groups: np.ndarray | None = None  # the folds' groups (grouped folds), one per row


@dataclass(frozen=True)
class Inner:
    """What :func:`fit_fold` knows of a training part beyond its rows.

    ``rounds``: the early-stopping result of an earlier fit of the same configuration on the
    same part (a tuning trial's), which skips the inner fit. ``groups``: the rows' groups under
    grouped folds, for the heads whose inner split holds out whole groups
    (:attr:`Head.es_by_group`)."""

    rounds: int | None = None
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class CVOptions:
    """How a cross-validation runs, beyond the head's parameters.

    ``pca``: PCA width fitted on each training part (0: none). ``refit``: heads that stop early
    refit the rounds found on each whole training part (tuning trials skip it). ``keep_models``:
    keep the fold models in the outcome. ``rounds``: per fold, the early-stopping result of a
    trial of this configuration (``CVOutcome.es_rounds``), so the refit skips the inner fit.
    ``report(fold, running_mean)``: called after each fold in fold order (the pruning hook).
    """

    pca: int = 0
    refit: bool = True
    keep_models: bool = False
    rounds: list[int] | None = None
    report: Callable[[int, float], None] | None = None


@dataclass
class CVOutcome:
    fold_scores: list[float]
    oof: np.ndarray
    models: list[FoldModel] = field(default_factory=list)
    es_rounds: list[int | None] = field(default_factory=list)
    cut: list[bool] = field(default_factory=list)  # per fold: boosting ended by the budget

    @property
    def mean(self) -> float:
        vals = [s for s in self.fold_scores if math.isfinite(s)]
        return float(np.mean(vals)) if vals else float("nan")


def _es_split(
    y: np.ndarray, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a fold's training part to fit on, and rows to pick the number of rounds on.

    Stratified by label, not by group, by default: the split only chooses how many rounds to
    refit on the whole training part, and the fold's validation part is never touched, so the
    fold scores stay honest either way. For boosted heads, holding out whole groups (one speaker
    of four) made the stopping point noisy and early: measured on FSDD, wav2vec2-base layer 6,
    grouped folds, default XGBoost: 0.266 out-of-fold accuracy with a grouped split against
    0.337 stratified. The MLP, which starts as a logistic regression (epoch 0 is a model),
    is the other way round: rows of the speakers it trains on reward it for learning those
    speakers, so it passes ``groups`` (FSDD digits, unseen speakers, ge2e: 0.9147 stratified,
    0.9193 grouped, logistic regression 0.9183; docs/classify.md).
    """
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    n = len(y)
    dummy = np.zeros(n)
    if groups is not None and len(np.unique(groups)) >= 2:
        gss = GroupShuffleSplit(n_splits=1, test_size=ES_FRACTION, random_state=seed)
        return next(gss.split(dummy, groups=groups))
    if y.ndim == 1:
        try:
            sss = StratifiedShuffleSplit(n_splits=1, test_size=ES_FRACTION, random_state=seed)
            return next(sss.split(dummy, y))
        except ValueError:
            pass
    return next(ShuffleSplit(n_splits=1, test_size=ES_FRACTION, random_state=seed).split(dummy))


def _target(enc: LabelEncoding, y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Remap labels to what the training part holds; return the map needed to expand back."""
    if enc.task == "multilabel":
        cols = np.flatnonzero(y.min(axis=0) != y.max(axis=0))
        const = y.mean(axis=0).astype(np.float64)
        return y[:, cols], {"columns": cols, "constant": const}
    present = np.unique(y)
    return np.searchsorted(present, y), {"columns": present}


def expand(proba: np.ndarray, extra: dict[str, np.ndarray], enc: LabelEncoding) -> np.ndarray:
    """Probabilities over the fitted columns -> probabilities over every label."""
    cols = extra["columns"]
    if enc.task == "multilabel":
        full = np.tile(extra["constant"], (len(proba), 1))
    else:
        full = np.zeros((len(proba), enc.n_classes))
    full[:, cols] = proba
    return full


def fit_fold(
    head: Head,
    x: np.ndarray,
    y: np.ndarray,
    enc: LabelEncoding,
    params: dict[str, Any],
    ctx: FitContext,
    opts: CVOptions = CVOptions(),
    inner: Inner = Inner(),
) -> FoldModel:
    """Fit preprocessing and head on one training part.

    Heads that stop early first fit on 85 % of the part, stopping on the other 15 %; with
    ``opts.refit`` the number of rounds found, scaled to the whole part, is then refit on all of
    it, so no training row is lost to early stopping. Tuning trials skip the refit (it doubles a
    trial's cost and rarely changes which configuration ranks first); the final models refit.
    ``inner``: an earlier fit's rounds, and the rows' groups (:class:`Inner`).
    """
    if not head.needs_es:
        return _fit_once(head, x, y, enc, params, ctx, opts.pca)
    rounds = inner.rounds
    if rounds is None:
        groups = inner.groups if head.es_by_group else None
        fit_idx, es_idx = _es_split(y, ctx.seed, groups)
        es = (x[es_idx], y[es_idx])
        probe = _fit_once(head, x[fit_idx], y[fit_idx], enc, params, ctx, opts.pca, es)
        rounds = head.rounds_used(probe.model)
        probe.es_rounds = rounds
        if rounds is None or not opts.refit:
            return probe
    scaled = math.ceil(rounds / (1.0 - ES_FRACTION)) if head.scales_rounds else rounds
    # 0 only from a head whose start is a model already (the MLP's logistic start)
    full = 0 if rounds == 0 else max(1, min(ctx.max_rounds, scaled))
    fm = _fit_once(head, x, y, enc, params, replace(ctx, max_rounds=full), opts.pca)
    fm.es_rounds = rounds
    return fm


def _fit_once(
    head: Head,
    x: np.ndarray,
    y: np.ndarray,
    enc: LabelEncoding,
    params: dict[str, Any],
    ctx: FitContext,
    pca: int,
    es_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> FoldModel:
    """Fit on ``x, y``; ``es_rows``: the early-stopping rows (features, labels) held out of them."""
    y_fit, extra = _target(enc, y)
    if enc.task != "multilabel" and len(extra["columns"]) < 2:
        raise DataError(
            f"a fold's training part holds only the class {enc.labels[extra['columns'][0]]}; "
            "use more items per class, fewer folds, or other groups"
        )
    standardize = bool(params.get("standardize", False)) and head.standardizes
    prep = Preprocessor(standardize=standardize, pca=pca)
    xf = prep.fit_transform(x, seed=ctx.seed, y=None if enc.task == "multilabel" else y_fit)
    es = None
    if es_rows is not None:
        x_es, y_es = es_rows
        if enc.task == "multilabel":
            es = (prep.transform(x_es), y_es[:, extra["columns"]])
        else:
            keep = np.isin(y_es, extra["columns"])
            if keep.any():
                es = (prep.transform(x_es[keep]), np.searchsorted(extra["columns"], y_es[keep]))
    n_out = y_fit.shape[1] if enc.task == "multilabel" else len(extra["columns"])
    model = head.fit(xf, y_fit, params, replace(ctx, task=enc.task, n_out=n_out), es)
    prep.extra = {k: np.asarray(v) for k, v in extra.items()}
    prep.extra["n_out"] = np.array(n_out)
    return FoldModel(prep, model)


def predict_fold(head: Head, fm: FoldModel, x: np.ndarray, enc: LabelEncoding) -> np.ndarray:
    """Probabilities over every label from one fitted fold."""
    n_out = int(fm.prep.extra["n_out"])
    ctx = FitContext(enc.task, n_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proba = head.predict(fm.model, fm.prep.transform(x), ctx)
    return expand(proba, fm.prep.extra, enc)


def fold_workers(threads: int, n_folds: int, x: np.ndarray, device: str = "cpu") -> tuple[int, int]:
    """How many folds fit at once, and the threads of each fit, for ``threads`` in all.

    Folds run side by side, one thread each, before a fit gets more threads: on small data a
    boosted fit's OpenMP threads mostly wait at their barriers, while independent folds scale
    with the cores. Concurrent folds each hold a copy of their training part, so they are
    capped to keep those copies within a quarter of the memory available. On a GPU the device
    is the parallel unit: its fits run one after another.
    """
    if threads <= 1 or n_folds <= 1 or device != "cpu":
        return 1, max(1, threads)
    workers = min(threads, n_folds)
    avail = _available_memory()
    if avail:
        workers = max(1, min(workers, int(avail // max(1, 4 * x.nbytes))))
    return workers, max(1, threads // workers)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cross_validate(
    head: Head,
    x: np.ndarray,
    targets: Targets,
    metric: Metric,
    params: dict[str, Any],
    ctx: FitContext,
    opts: CVOptions = CVOptions(),
) -> CVOutcome:
    """Fit and score every fold of ``targets.splits`` on ``x``.

    Under a budget with an end of rounds (``ctx.budget.rounds_end``: a tuning trial under
    ``--timeout``), each fold's boosted fit gets its share of what is left (over the waves of
    concurrent folds still to fit) and, past it, stops adding rounds and keeps what it has, as if
    it had reached ``max_rounds``: a trial under a tight ``--timeout`` finishes with fewer rounds
    instead of failing.

    With ``ctx.threads`` above one, folds fit side by side (:func:`fold_workers`); their
    results are taken, scored and reported in fold order, so the outcome and the pruner's view
    do not depend on which fold finished first. An exception from ``opts.report`` (a pruned
    trial) stops the folds still running at their next boosting round and is raised once they
    stop.
    """
    y, enc, splits = targets.y, targets.enc, targets.splits
    oof = np.zeros((len(y), enc.n_classes), dtype=np.float64)
    out = CVOutcome([], oof)
    workers, per_fit = fold_workers(ctx.threads, len(splits), x, ctx.device)
    stop = threading.Event()
    fctx = replace(ctx, threads=per_fit, stop=stop)

    def one(k: int) -> tuple[FoldModel, np.ndarray]:
        if fctx.expired():
            raise BudgetExceeded(f"the time budget ran out before fold {k}")
        tr, va = splits[k]
        known = opts.rounds[k] if opts.rounds is not None else None
        part_groups = targets.groups[tr] if targets.groups is not None else None
        # fold k's share: the folds from k on fit in this many waves of ``workers``
        c = replace(fctx, budget=fctx.budget.share(math.ceil((len(splits) - k) / workers)))
        fm = fit_fold(head, x[tr], y[tr], enc, params, c, opts, Inner(known, part_groups))
        fm.cut = c.budget.rounds_over()
        return fm, predict_fold(head, fm, x[va], enc)

    def take(k: int, fm: FoldModel, proba: np.ndarray) -> None:
        _take(out, targets, metric, k, fm, proba)
        if opts.keep_models:
            out.models.append(fm)
        done = [s for s in out.fold_scores if math.isfinite(s)]
        if opts.report is not None and done:
            opts.report(k, float(np.mean(done)))

    with threadpool_limits(limits=per_fit):
        if workers == 1:
            for k in range(len(splits)):
                take(k, *one(k))
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fold") as pool:
                futures = [pool.submit(one, k) for k in range(len(splits))]
                try:
                    for k, fut in enumerate(futures):
                        take(k, *fut.result())
                except BaseException:
                    stop.set()  # the other folds stop at their next round
                    for fut in futures:
                        fut.cancel()
                    raise
    return out


def _take(
    out: CVOutcome, targets: Targets, metric: Metric, k: int, fm: FoldModel, proba: np.ndarray
) -> None:
    """Fold ``k``'s validation predictions into ``out``, scored."""
    va = targets.splits[k][1]
    out.oof[va] = proba
    out.es_rounds.append(fm.es_rounds)
    out.cut.append(fm.cut)
    try:
        out.fold_scores.append(
            metric(targets.y[va], out.oof[va], targets.enc.task, targets.enc.positive_index)
        )
    except ValueError:
        out.fold_scores.append(float("nan"))


def save_models(head: Head, models: list[FoldModel], folder: Path) -> list[str]:
    """Write every fold's model and preprocessing into ``folder``; return the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, fm in enumerate(models):
        files.append(head.save(fm.model, folder, f"fold{k}"))
        fm.prep.save(folder / f"fold{k}.prep.npz")
        files.append(f"fold{k}.prep.npz")
    return files


def load_models(head: Head, folder: Path, files: list[str]) -> list[FoldModel]:
    models = []
    for name in files:
        if name.endswith(".prep.npz"):
            continue
        stem = name.split(".")[0]
        models.append(
            FoldModel(Preprocessor.load(folder / f"{stem}.prep.npz"), head.load(folder, name))
        )
    return models
