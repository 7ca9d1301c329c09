"""``fit_head``: tune a head with Optuna over the shared folds, refit the best, save a run.

The problem's set-up (shared with ``probe``) is :mod:`.problem`; applying a saved run to new
items is :mod:`.apply` (``predict_head``, re-exported here).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..cache.key import is_window_pool
from ..embeddings import store_model
from ..errors import ConfigError, RunError
from ..runs import FeatureRef, Run, RunRecord, find_run, recipe_digest, save_once
from ..workspace import Workspace
from .budget import Budget, BudgetExceeded, ProgressFn
from .cv import CVOptions, CVOutcome, Targets, cross_validate
from .device import resolve_device
from .features import FeatureChoice, layer_choices, pool_choices
from .fitconfig import FitConfig
from .heads import DEFAULT_MAX_ROUNDS, FitContext, Head, get_head
from .metrics import Metric, get_metric, score_all
from .problem import Problem, cores, int_list, prepare_problem, str_list

# tests/faults patch fit._save_models (a full disk during the save)
from .saving import save_models_atomically as _save_models
from .search import Found, Space, pca_choices, search
from .trials import TrialLoop
from .windows import WindowData, check_windows, cross_validate_windows, window_matrix


@dataclass
class FitResult:
    """What ``fit_head`` returns: the run, the study and the out-of-fold predictions."""

    run: str
    run_dir: Path
    metric: str
    score: float
    scores: dict[str, float]
    fold_scores: list[float]
    best_params: dict[str, Any]
    study: str | None
    trials: int
    oof: pd.DataFrame
    oof_path: Path
    time_s: float
    head: str = ""
    encoder: str = ""
    warnings: list[str] = field(default_factory=list)
    trial_score: float | None = None  # the best trial's fold mean (boosted heads: before refit)
    refit: bool = False  # the fold models were refit on each whole training part after tuning

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: ``run``, ``metric``, ``score``, ``scores``, ``oof`` and more."""
        return {
            "run": self.run,
            "metric": self.metric,
            "score": _num(self.score),
            "scores": {k: _num(v) for k, v in self.scores.items()},
            "oof": str(self.oof_path),
            "fold_scores": [_num(v) for v in self.fold_scores],
            "params": self.best_params,
            "study": self.study,
            "trials": self.trials,
            "time_s": round(self.time_s, 2),
            "head": self.head,
            "encoder": self.encoder,
            "warnings": self.warnings,
            "trial_score": _num(self.trial_score),
            "refit": self.refit,
        }


def _num(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def fit_head(
    head: str | FitConfig,
    model: str | None = None,
    *,
    workspace: Any = None,
    progress: ProgressFn | None = None,
    **settings: Any,
) -> FitResult:
    """Tune ``head`` on the embeddings of ``model`` under the dataset's shared folds; save a run.

    Takes a :class:`FitConfig` (``fit_head(FitConfig("xgb", "logmel", trials=50), workspace=ws)``)
    or its fields as arguments (``fit_head("xgb", "logmel", trials=50, workspace=ws)``).

    Args:
        head: a name of the ``HEADS`` registry (``logreg``, ``xgb``, ``catboost``, ``lgbm``,
            ``mlp``).
        model: encoder whose store to read (hub id, local folder, ``logmel``).
        workspace: the workspace folder (default ``./.sslstack`` or ``$SSLSTACK_WORKSPACE``).
        progress: called with a :class:`FitProgress` after each fold and trial, for notes
            (the device chosen, the warm start) and before the refit.
        **settings: the other fields of :class:`FitConfig`, which describes each.

    Returns:
        FitResult with the run id, the scores and the out-of-fold predictions.
    """
    cfg = head if isinstance(head, FitConfig) else FitConfig(head, str(model), **settings)
    t0 = time.time()
    budget = Budget.of(cfg.timeout)
    hd = get_head(cfg.head)
    if cfg.trials < 0:
        raise ConfigError(f"--trials {cfg.trials}: use 0 (defaults) or more")
    prob = prepare_problem(Workspace.at(workspace), cfg)
    met = get_metric(cfg.metric, prob.enc.task)
    dev, why = resolve_device(cfg.device, hd.name, prob.enc.task)
    ctx = FitContext(prob.enc.task, prob.enc.n_classes, cfg.seed, dev, cfg.threads or cores(),
                     cfg.max_rounds or DEFAULT_MAX_ROUNDS, budget)  # fmt: skip
    space = _space(cfg, prob, hd, ctx.max_rounds)
    loop = TrialLoop(budget, len(prob.splits), cfg.trials, met.direction == "maximize",
                     not hd.trials_final, progress)  # fmt: skip
    if hd.gpu_capable:
        loop.emit(stage="note", trial=None, fold=None, score=None, message=f"device: {why}")
    evaluate = _Evaluate(prob, hd, met, ctx, space.windows)
    found = search(evaluate, prob, hd, met, space, cfg, loop)
    best = found.best
    if space.windows:
        best["windows"] = space.windows  # in run.json's params: predict_head aggregates too
    recipe = _recipe(prob, hd.name, met.name, best, found.study, found.trials, ctx)
    if (same := find_run(prob.ws, recipe)) is not None:  # a finished study rerun: nothing new
        return _reused(same, prob, t0)
    choice = FeatureChoice(str(best["layer"]), str(best["pool"]))
    params = {k: v for k, v in best.items() if k not in ("layer", "pool", "pca", "windows")}
    rounds = found.rounds
    if not isinstance(rounds, list) or len(rounds) != len(prob.splits):
        rounds = None
    opts = CVOptions(pca=int(best["pca"]), keep_models=True, rounds=rounds)
    final = _final(loop, hd, found.kept, found.notes, cfg.timeout,
                   lambda: evaluate(choice, params, opts))  # fmt: skip
    prob.warnings.extend(found.notes)
    result = _save(prob, hd, met.name, found, final, ctx, t0, recipe_digest(recipe))
    # refit after tuning; an MLP's trials refit themselves (its run keeps the best trial's
    # models, or recomputes them when another process ran that trial: the same models)
    result.refit = not hd.trials_final and final is not found.kept
    return result


def _space(cfg: FitConfig, prob: Problem, hd: Head, max_rounds: int) -> Space:
    """The feature choices, PCA widths and windows ``cfg`` lets the search pick from."""
    windows = check_windows(cfg.windows, prob.store)
    layers = layer_choices(prob.store, int_list(cfg.layer))
    pools = pool_choices(prob.store, str_list(cfg.pool))
    if windows:  # windows hold the extracted poolings, not the clip-level max over windows
        pools = [p for p in pools if not any(is_window_pool(q) for q in p.split("+"))]
    first = prob.reader.matrix(FeatureChoice(layers[0], pools[0].split("+")[0]))
    classes = prob.enc.n_classes if prob.enc.task != "multilabel" else 0
    pcas = pca_choices(cfg.pca, hd, first.shape[1], cfg.timeout, classes)
    return Space(layers, pools, pcas, windows, max_rounds)


@dataclass
class _Evaluate:
    """Cross-validation of one configuration on the problem's features (windows or clips)."""

    prob: Problem
    hd: Head
    met: Metric
    ctx: FitContext  # its budget is the command's: the refit's, and a trial's outer bound
    windows: str | None
    _windows: dict[FeatureChoice, WindowData] = field(default_factory=dict)

    def __call__(
        self,
        choice: FeatureChoice,
        params: dict[str, Any],
        opts: CVOptions,
        budget: Budget | None = None,
    ) -> CVOutcome:
        prob = self.prob
        ctx = self.ctx if budget is None else replace(self.ctx, budget=budget)
        targets = Targets(prob.y, prob.enc, prob.splits, prob.groups)
        if self.windows:
            if choice not in self._windows:
                self._windows[choice] = window_matrix(prob.store, prob.reader.keys, choice)
            wd = self._windows[choice]
            return cross_validate_windows(self.hd, wd, targets, self.met, params, ctx,
                                          self.windows, opts)  # fmt: skip
        x = prob.reader.matrix(choice)
        return cross_validate(self.hd, x, targets, self.met, params, ctx, opts)


def _recipe(
    prob: Problem,
    head: str,
    metric: str,
    best: dict[str, Any],
    study: str | None,
    n_trials: int,
    ctx: FitContext,
) -> dict[str, Any]:
    """Everything that determines a head run's result, the audio of its items included."""
    keys = prob.reader.keys
    items = "\n".join(f"{i}\t{h}" for i, h in zip(prob.ids, keys, strict=True))
    return {
        "head": head,
        "store": prob.store.path.name,
        "dataset": prob.dataset,
        "folds": prob.folds.digest,
        "items": hashlib.sha1(items.encode("utf-8")).hexdigest(),
        "labels": prob.enc.to_dict(),
        "metric": metric,
        "params": best,
        "study": study,
        "trials": n_trials,
        "seed": ctx.seed,
        "device": ctx.device,
        "max_rounds": ctx.max_rounds,
    }


def _reused(run: Run, prob: Problem, t0: float) -> FitResult:
    """The FitResult of a run saved before with the same recipe."""
    rec = run.record
    note = (
        f"run {run.id} holds this study's best trial fitted the same way already; nothing new "
        "was saved (raise --trials to continue the study)"
    )
    return FitResult(
        run=run.id,
        run_dir=run.dir,
        metric=str(rec.metric),
        score=float("nan") if rec.score is None else float(rec.score),
        scores={k: float("nan") if v is None else v for k, v in rec.scores.items()},
        fold_scores=[float("nan") if v is None else v for v in rec.fold_scores],
        best_params=rec.params,
        study=rec.study,
        trials=int(rec.trials or 0),
        oof=run.oof(),
        oof_path=run.oof_path,
        time_s=time.time() - t0,
        head=str(rec.head),
        encoder=str(rec.encoder),
        warnings=[*prob.warnings, note],
        trial_score=rec.trial_score,
    )


def _final(
    loop: TrialLoop,
    hd: Head,
    kept: Any,
    notes: list[str],
    timeout: float | None,
    refit: Any,
) -> Any:
    """The run's fold models: the refit of the best configuration, or the best trial's own
    models when they are final already (logistic) or the budget leaves no time to refit."""
    if kept is not None and hd.trials_final:
        return kept  # the trial fitted each whole training part (logistic, MLP): it is the refit
    if kept is not None and not loop.refit_fits():
        notes.append(
            f"--timeout {timeout:g}: no time left to refit; the run keeps the best trial's fold "
            "models (early-stopped on 85 % of each training part)"
        )
        return kept
    loop.emit(stage="refit", trial=None, fold=None, score=None, eta_s=loop.refit_s())
    try:
        return refit()
    except BudgetExceeded:
        if kept is None:
            raise RunError(
                f"--timeout {timeout:g}: the final fit did not finish within the budget; raise "
                "--timeout or lower --max-rounds"
            ) from None
        notes.append(
            f"--timeout {timeout:g}: the refit was stopped at the budget; the run keeps the best "
            "trial's fold models (early-stopped on 85 % of each training part)"
        )
        return kept


def _scored(
    prob: Problem, final: CVOutcome, metric: str
) -> tuple[pd.DataFrame, dict[str, float], float]:
    """The out-of-fold frame (id, fold, one column per label), every score, and ``metric``'s."""
    enc = prob.enc
    oof = pd.DataFrame({"id": prob.ids, "fold": prob.folds.label_of(prob.ids)})
    for j, lab in enumerate(enc.labels):
        oof[lab] = final.oof[:, j]
    scores = score_all(prob.y, final.oof, enc.task, enc.positive_index)
    score = scores.get(metric)
    if score is None:
        score = get_metric(metric, enc.task)(prob.y, final.oof, enc.task, enc.positive_index)
    return oof, scores, score


def _save(
    prob: Problem,
    hd: Head,
    metric: str,
    found: Found,
    final: CVOutcome,
    ctx: FitContext,
    t0: float,
    recipe: str,
) -> FitResult:
    """Save the run of ``found``'s best configuration fitted as ``final`` (or reuse the run
    another worker of the study saved with the same ``recipe``)."""
    best = found.best
    choice = FeatureChoice(str(best["layer"]), str(best["pool"]))
    enc = prob.enc
    encoder = store_model(prob.store)  # a local model: the path it was extracted from
    tag = f"{hd.name}-{encoder.rstrip('/').split('/')[-1]}"
    oof, scores, score = _scored(prob, final, metric)
    files: list[str] = []  # filled by fill() before run.json is written
    meta = RunRecord(
        id="",  # reserved by save_once when the run is saved
        number=0,
        kind="head",
        dataset=prob.dataset,
        folds_digest=prob.folds.digest,
        **enc.to_dict(),
        head=hd.name,
        encoder=encoder,
        features=[FeatureRef(**f) for f in choice.describe(prob.store)],
        params=best,
        metric=metric,
        score=_num(score),
        scores={k: _num(v) for k, v in scores.items()},
        fold_scores=[_num(v) for v in final.fold_scores],
        trials=found.trials,
        time_s=round(time.time() - t0, 3),
        extra={
            "feature_choice": {
                "store": prob.store.path.name,
                "layer": choice.layer,
                "pool": choice.pool,
            },
            "trial_score": _num(found.trial_score),
            "study": found.study,
            "storage": found.storage,
            "device": ctx.device,
            "max_rounds": ctx.max_rounds,
            "warnings": prob.warnings,
            "models": files,
            "tag": tag,
        },
    )

    def fill(folder: Path) -> None:
        shown = prob.ws.run_dir(meta.id) / "models"  # where they go, not the temporary folder
        files.extend(_save_models(hd, final.models, folder / "models", shown))

    # several workers of one study reach the same recipe: the first saves, the others reuse
    run, saved = save_once(prob.ws, meta, oof, recipe, fill=fill)
    if not saved:
        return _reused(run, prob, t0)
    return FitResult(
        run=run.id,
        run_dir=run.dir,
        metric=metric,
        score=float(score),
        scores=scores,
        fold_scores=final.fold_scores,
        best_params=best,
        study=found.study,
        trials=found.trials,
        oof=oof,
        oof_path=run.oof_path,
        time_s=meta.time_s,
        head=hd.name,
        encoder=encoder,
        warnings=prob.warnings,
        trial_score=found.trial_score,
    )
