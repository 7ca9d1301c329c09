"""``fit_head``: tune a head with Optuna over the shared folds, refit the best, save a run.

The problem's set-up (shared with ``probe``) is :mod:`.problem`; applying a saved run to new
items is :mod:`.apply` (``predict_head``, re-exported here).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import TrialState

from ..cache.key import is_window_pool
from ..embeddings import store_model
from ..errors import ConfigError, DiskFullError, RunError
from ..runs import Run, RunRecord, find_run, recipe_digest, save_once
from ..workspace import Workspace
from .budget import Budget, BudgetExceeded, ProgressFn
from .cv import cross_validate, save_models
from .features import FeatureChoice, default_choice, layer_choices, pool_choices
from .heads import DEFAULT_MAX_ROUNDS, FitContext, Head, get_head
from .metrics import get_metric, score_all
from .probing import probe_record
from .problem import Problem, cores, int_list, prepare_problem, str_list
from .trials import TrialLoop
from .tuning import finished_trials, open_study, optimize, report_fold, storage_label
from .warm import probe_choice, screen_features
from .windows import WindowData, check_windows, cross_validate_windows, window_matrix

PCA_WIDTHS = (32, 64, 128, 256)
PCA_AUTO_ABOVE = 2048  # `--pca auto` offers PCA widths to boosted heads above this width
DEVICES = ("auto", "cpu", "cuda")
ES_ROUNDS_ATTR = "es_rounds"  # trial attribute: per fold, the rounds early stopping chose
CUT_ATTR = (
    "budget_cut"  # trial attribute: folds whose boosting the budget ended, not early stopping
)


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


def resolve_device(device: str, head: str, task: str = "multiclass") -> tuple[str, str]:
    """The device of ``head``'s fits and why, e.g. ``("cpu", "cpu (no GPU seen)")``.

    ``auto`` picks ``cuda`` when torch sees a GPU and the head supports it for ``task`` (an
    XGBoost built with CUDA; CatBoost seeing a GPU, single-label tasks), else ``cpu``.
    ``cuda`` asked for explicitly is used as asked (the library then says what is missing).

    Raises:
        ConfigError: unknown device.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    hd = get_head(head)
    if device == "cuda":
        return "cuda", f"cuda for {head} (--device cuda)"
    if device == "cpu" or not hd.gpu_capable:
        return "cpu", f"cpu for {head}" + (" (--device cpu)" if device == "cpu" else "")
    if not _torch_sees_gpu():
        return "cpu", f"cpu for {head} (no GPU seen)"
    ok, why = hd.gpu_support(task)
    if not ok:
        return "cpu", f"cpu for {head} (a GPU is present, but {why})"
    return "cuda", f"cuda for {head} (a GPU is present)"


def _torch_sees_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _pca_choices(pca: str | int, head: Head, dim: int) -> list[int]:
    if isinstance(pca, int) or (isinstance(pca, str) and pca.isdigit()):
        width = int(pca)
        return [width if width < dim else 0]
    if pca == "off":
        return [0]
    if pca == "auto":
        # PCA mixes the columns trees split on: on 768-wide wav2vec2 features, PCA trials
        # scored 0.24-0.28 against 0.32-0.35 at full width (docs/benchmarks.md), so only very
        # wide inputs (concatenated layers or poolings) get the narrow widths as options
        if not head.trees or dim <= PCA_AUTO_ABOVE:
            return [0]
        return [0] + list(PCA_WIDTHS)
    if pca == "tune":
        return [0] + [w for w in PCA_WIDTHS if w < dim]
    raise ConfigError(f"--pca {pca!r}: use auto, off, tune or a width such as 64")


def _study_name(prob: Problem, head: str, metric: str, space: dict[str, Any]) -> str:
    blob = json.dumps(
        {**space, "folds": prob.folds.digest, "enc": prob.enc.to_dict()}, sort_keys=True
    )
    h = hashlib.sha1(blob.encode()).hexdigest()[:8]
    return f"{head}-{prob.store.path.name}-{prob.dataset}-{metric}-{h}"


@dataclass(frozen=True)
class FitConfig:
    """What ``fit_head`` is asked to do: the ``sslstack fit-head`` flags (each field is described
    at :func:`fit_head`). Frozen, with ``to_dict``/``from_dict``, as ``ExtractConfig`` is."""

    head: str
    model: str
    data: Any = None
    layer: Sequence[int] | str | int | None = None
    pool: Sequence[str] | str | None = None
    trials: int = 30
    metric: str | None = None
    timeout: float | None = None
    task: str | None = None
    positive: str | None = None
    group_col: str | None = None
    folds: int | None = None
    seed: int = 0
    device: str = "auto"
    storage: str | None = None
    pca: str | int = "auto"
    study: str | None = None
    store: str | None = None
    max_rounds: int | None = None
    threads: int | None = None
    windows: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return cls(**d)


def _values(cfg: Any) -> tuple[Any, ...]:
    """A config's field values in field order (no copies, unlike ``dataclasses.astuple``)."""
    return tuple(getattr(cfg, f.name) for f in fields(cfg))


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
        head: ``logreg``, ``xgb``, ``catboost`` or ``lgbm``.
        model: encoder whose store to read (hub id, local folder, ``logmel``).
        data: manifest CSV, folder or dataset name (default: the workspace's labeled dataset).
        layer: restrict the layer search (e.g. ``"6-12"`` or ``[6, 7, 8]``); one layer fixes it.
        pool: restrict the pooling search (e.g. ``"mean,std"``); one pooling fixes it.
        trials: finished trials the study should hold (0: fit the default parameters).
        metric: the metric to optimize (default: roc_auc / accuracy / lwlrap by task).
        timeout: wall-clock budget in seconds of the whole call, refit included: tuning leaves
            the estimated refit time, a trial in progress stops at the budget (not counted),
            and without time to refit the run keeps the best trial's fold models (a warning
            says so). No trial finished: RunError saying what to change.
        task, positive: override the task read from the labels; the binary positive class.
        group_col: manifest column whose groups never straddle folds (first fold creation only).
        folds: number of folds when the dataset has none yet (default 5).
        seed: seed of folds (when new), sampler and models.
        device: ``auto``, ``cpu`` or ``cuda`` (XGBoost and CatBoost).
        storage: Optuna storage URL (PostgreSQL) instead of the workspace's journal file.
        pca: ``auto`` (tuned widths for boosted heads on wide features), ``off``, ``tune`` or
            a fixed width.
        study: study name (default: derived from head, store, dataset, metric and space).
        max_rounds: cap on boosting rounds (default 1000, with early stopping).
        threads: CPU threads (BLAS, XGBoost, CatBoost); default: all cores for the boosted
            heads; for logreg one on small data (under 2 million feature values).
        windows: ``mean`` or ``max``: fit on a windowed store's per-window vectors (each with
            its clip's label, in its clip's fold) and aggregate each clip's window
            probabilities by their mean or max (:mod:`.windows`).
        progress: called with a :class:`FitProgress` after each fold and trial, for notes
            (the device chosen, the warm start) and before the refit.

    Returns:
        FitResult with the run id, the scores and the out-of-fold predictions.
    """
    cfg = head if isinstance(head, FitConfig) else FitConfig(head, str(model), **settings)
    (head, model, data, layer, pool, trials, metric, timeout, task, positive, group_col, folds,
     seed, device, storage, pca, study, store, max_rounds, threads,
     windows) = _values(cfg)  # fmt: skip
    head, model = str(head), str(model)
    t0 = time.time()
    budget = Budget.of(timeout)
    hd = get_head(head)
    ws = Workspace.at(workspace)
    if trials < 0:
        raise ConfigError(f"--trials {trials}: use 0 (defaults) or more")
    prob = prepare_problem(ws, model, data, task, positive, group_col, folds, seed, store)
    met = get_metric(metric, prob.enc.task)
    windows = check_windows(windows, prob.store)
    layers = layer_choices(prob.store, int_list(layer))
    pools = pool_choices(prob.store, str_list(pool))
    if windows:  # windows hold the extracted poolings, not the clip-level max over windows
        pools = [p for p in pools if not any(is_window_pool(q) for q in p.split("+"))]
    first = prob.reader.matrix(FeatureChoice(layers[0], pools[0].split("+")[0]))
    pcas = _pca_choices(pca, hd, first.shape[1])
    dev, why = resolve_device(device, head, prob.enc.task)
    ctx = FitContext(
        prob.enc.task,
        prob.enc.n_classes,
        seed,
        dev,
        threads or cores(),
        max_rounds or DEFAULT_MAX_ROUNDS,
    )
    loop = TrialLoop(budget, len(prob.splits), trials, met.direction == "maximize",
                     hd.needs_es, progress)  # fmt: skip
    if hd.gpu_capable:
        loop.emit(stage="note", trial=None, fold=None, score=None, message=f"device: {why}")

    window_data: dict[FeatureChoice, WindowData] = {}

    def run_cv(choice: FeatureChoice, params: dict[str, Any], width: int, **kw: Any) -> Any:
        c = replace(ctx, deadline=kw.pop("deadline", budget.deadline))
        if windows:
            if choice not in window_data:
                window_data[choice] = window_matrix(prob.store, prob.reader.keys, choice)
            return cross_validate_windows(
                hd, window_data[choice], prob.y, prob.enc, prob.splits, met, params, c,
                how=windows, pca=width, **kw,
            )  # fmt: skip
        x = prob.reader.matrix(choice)
        return cross_validate(
            hd, x, prob.y, prob.enc, prob.splits, met, params, c, pca=width, groups=prob.groups,
            **kw,
        )  # fmt: skip

    study_name, n_trials, rounds, trial_score, kept = None, 0, None, None, None
    notes: list[str] = []
    if trials == 0:
        choice = default_choice(layers, pools)
        best = {**hd.defaults(), "layer": choice.layer, "pool": choice.pool, "pca": pcas[0]}
    else:
        space: dict[str, Any] = {"layers": layers, "pools": pools, "pca": pcas}
        if windows:
            space["windows"] = windows
        if hd.needs_es:
            space["max_rounds"] = ctx.max_rounds
        study_name = study or _study_name(prob, head, met.name, space)
        st = open_study(
            ws,
            study_name,
            met.direction,
            storage=storage,
            seed=seed,
            n_startup=min(5, max(2, trials // 5)),
        )
        # a study whose trials all failed (stopped by a budget, killed) still starts warm
        if all(t.state == TrialState.FAIL for t in st.trials) and hd.warm_start():
            warm, source = _warm_features(prob, met, layers, pools)
            st.enqueue_trial(_warm_params(hd, warm, layers, pools, pcas, budget.seconds))
            note = f"first trial: features {warm.layer}/{warm.pool} ({source})"
            loop.emit(stage="note", trial=None, fold=None, score=None, message=note)

        cut_trials: list[int] = []

        def run_trial(trial: Any, deadline: float | None) -> Any:
            la = _suggest(trial, "layer", layers)
            po = _suggest(trial, "pool", pools)
            width = _suggest(trial, "pca", pcas)
            params = hd.space(trial)

            def report(k: int, m: float) -> None:
                loop.fold_done(trial, k, m)
                report_fold(trial, k, m)

            out = run_cv(FeatureChoice(la, po), params, width, report=report, refit=False,
                         keep_models=True, deadline=deadline,
                         soft_seconds=loop.trial_share(deadline))  # fmt: skip
            if all(r is not None for r in out.es_rounds):
                trial.set_user_attr(ES_ROUNDS_ATTR, out.es_rounds)
            if any(out.cut):
                trial.set_user_attr(CUT_ATTR, int(sum(out.cut)))
                cut_trials.append(trial.number)
            return out

        optimize(st, loop.objective(run_trial), trials, None, loop.after_trial,
                 catch=(BudgetExceeded,))  # fmt: skip
        n_trials = finished_trials(st)
        try:
            bt = st.best_trial
        except ValueError:
            raise RunError(_no_trial(loop, timeout, study_name)) from None
        best = {"layer": layers[0], "pool": pools[0], "pca": pcas[0], **bt.params}
        rounds = bt.user_attrs.get(ES_ROUNDS_ATTR)
        trial_score = st.best_value
        if loop.keeps_best(bt.number) and loop.best is not None:
            kept = loop.best.outcome
        if cut_trials:
            notes.append(_cut_note(timeout, cut_trials, bt, rounds, len(prob.splits), hd))
        if loop.stopped is not None:
            notes.append(
                f"--timeout {timeout:g}: trial stopped at the budget after {loop.stopped} of "
                f"{len(prob.splits)} folds (not counted); kept the best finished trial "
                f"#{bt.number} ({_fmt(trial_score)})"
            )
    if windows:
        best["windows"] = windows  # in run.json's params: predict_head aggregates windows too
    recipe = _recipe(prob, hd.name, met.name, best, study_name, n_trials, ctx)
    if (same := find_run(ws, recipe)) is not None:  # a finished study rerun: nothing new
        return _reused(same, prob, t0)
    choice = FeatureChoice(str(best["layer"]), str(best["pool"]))
    params = {k: v for k, v in best.items() if k not in ("layer", "pool", "pca", "windows")}
    if not isinstance(rounds, list) or len(rounds) != len(prob.splits):
        rounds = None
    final = _final(loop, hd, kept, notes, timeout,
                   lambda: run_cv(choice, params, int(best["pca"]), keep_models=True,
                                  rounds=rounds))  # fmt: skip
    prob.warnings.extend(notes)
    result = _save(
        prob,
        hd,
        met.name,
        choice,
        best,
        final,
        study_name,
        storage,
        n_trials,
        t0,
        ctx,
        trial_score,
        recipe_digest(recipe),
    )
    result.refit = hd.needs_es and final is not kept
    return result


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
    m = run.meta
    note = (
        f"run {run.id} holds this study's best trial fitted the same way already; nothing new "
        "was saved (raise --trials to continue the study)"
    )
    return FitResult(
        run=run.id,
        run_dir=run.dir,
        metric=m["metric"],
        score=float("nan") if m.get("score") is None else float(m["score"]),
        scores={k: float("nan") if v is None else v for k, v in m.get("scores", {}).items()},
        fold_scores=[float("nan") if v is None else v for v in m.get("fold_scores", [])],
        best_params=m["params"],
        study=m.get("study"),
        trials=int(m.get("trials") or 0),
        oof=run.oof(),
        oof_path=run.oof_path,
        time_s=time.time() - t0,
        head=m["head"],
        encoder=m["encoder"],
        warnings=[*prob.warnings, note],
        trial_score=m.get("trial_score"),
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


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
    if kept is not None and not hd.needs_es:
        return kept  # a logistic trial fits each whole training part: it is the refit
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


def _cut_note(
    timeout: float | None, cut_trials: list[int], bt: Any, rounds: Any, folds: int, hd: Head
) -> str:
    """One line: the budget, not early stopping, ended the boosting (of which trials)."""
    unit, what_ended = ("rounds", "boosting") if hd.trees else ("epochs", "training")
    best = int(bt.user_attrs.get(CUT_ATTR, 0))
    what = f"{len(cut_trials)} trial(s)"
    if best:
        span = ""
        if isinstance(rounds, list) and all(isinstance(r, int) for r in rounds):
            span = f" at {min(rounds)}-{max(rounds)} {unit}"
        what += f", the best (#{bt.number}) in {best} of {folds} folds{span}"
    return (
        f"--timeout {timeout:g}: the budget, not early stopping, ended the {what_ended} of {what}; "
        "those models had not converged (raise --timeout, or --pca 64 / --pool mean for "
        "cheaper rounds)"
    )


def _no_trial(loop: TrialLoop, timeout: float | None, study_name: str | None) -> str:
    """One line for a study without a complete trial: what happened and what to change."""
    if loop.stopped is not None and timeout:
        return (
            f"--timeout {timeout:g}: no trial finished (the first stopped after {loop.stopped} "
            f"of {loop.folds} folds); raise --timeout (one trial needs more than "
            f"{loop.budget.elapsed():.0f} s here), or make a trial cheaper: --max-rounds 200, "
            "--pool mean, --pca 64, --threads N"
        )
    return f"study {study_name} has no complete trial yet; run more --trials"


def _warm_features(
    prob: Problem, met: Any, layers: list[str], pools: list[str]
) -> tuple[FeatureChoice, str]:
    """The first trial's features and where they come from: the best choice of this store's
    saved probe on this dataset and metric, else the best of a ridge screen."""
    record = probe_record(prob.ws, prob.store.path.name, prob.dataset, met.name)
    found = probe_choice(record, layers, pools, met.greater_is_better)
    if found is not None:
        return found[0], f"the best of 'sslstack probe', {met.name} {found[1]:.4f}"
    warm = screen_features(prob.reader, prob.y, prob.enc, prob.splits, met, layers, pools)
    return warm, "the best of a ridge screen over the feature choices"


def _warm_params(
    hd: Head,
    warm: FeatureChoice,
    layers: list[str],
    pools: list[str],
    pcas: list[int],
    budget_s: float | None = None,
) -> dict[str, Any]:
    """The first trial of a new study: the head's known-good parameters on ``warm`` (with its
    fast start under a time budget)."""
    start: dict[str, Any] = {**hd.warm_start(), **(hd.fast_start() if budget_s else {})}
    if len(layers) > 1:
        start["layer"] = warm.layer
    if len(pools) > 1:
        start["pool"] = warm.pool
    if len(pcas) > 1:
        start["pca"] = 0
    return start


def _suggest(trial: Any, name: str, choices: list[Any]) -> Any:
    return trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]


def _save_models(hd: Head, models: Any, folder: Path, shown: Path | None = None) -> list[str]:
    """Write the fold models into a temporary folder renamed to ``folder`` once whole: a save
    that fails (a full disk, a library's own error) leaves no half-written models and is one
    line naming the folder (``shown``: the path to name), whichever head wrote them."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    try:
        names = save_models(hd, models, tmp)
        os.replace(tmp, folder)
        return names
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _save_error(hd, shown or folder, e) from None


def _save_error(hd: Head, folder: Path, e: Exception) -> Exception:
    """One line for a failed model save: a full disk as DiskFullError, else what failed."""
    text = f"{e}"
    errno = getattr(e, "errno", None)
    if errno in (28, 122) or "No space left" in text or _low_space(folder):
        return DiskFullError(
            f"{folder}: no space left on device while saving the {hd.name} models; nothing "
            "of the run was kept: free some space (or use another --workspace) and rerun "
            "(the study's trials are kept)"
        )
    if isinstance(e, OSError) and errno is not None:
        return OSError(errno, e.strerror, e.filename or str(folder))
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return RunError(f"{folder}: saving the {hd.name} models failed ({first[:300]})")


def _low_space(folder: Path) -> bool:
    """Whether the file system of ``folder`` (or its nearest existing parent) is nearly full:
    libraries report a full disk in their own words (XGBoost: "FileStream.Write incomplete")."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _save(
    prob: Problem,
    hd: Head,
    metric: str,
    choice: FeatureChoice,
    best: dict[str, Any],
    final: Any,
    study_name: str | None,
    storage: str | None,
    n_trials: int,
    t0: float,
    ctx: FitContext,
    trial_score: float | None = None,
    recipe: str | None = None,
) -> FitResult:
    enc = prob.enc
    encoder = store_model(prob.store)  # a local model: the path it was extracted from
    tag = f"{hd.name}-{encoder.rstrip('/').split('/')[-1]}"
    oof = pd.DataFrame({"id": prob.ids, "fold": prob.folds.label_of(prob.ids)})
    for j, lab in enumerate(enc.labels):
        oof[lab] = final.oof[:, j]
    scores = score_all(prob.y, final.oof, enc.task, enc.positive_index)
    score = scores.get(metric)
    if score is None:
        score = get_metric(metric, enc.task)(prob.y, final.oof, enc.task, enc.positive_index)
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
        features=choice.describe(prob.store),
        params=best,
        metric=metric,
        score=_num(score),
        scores={k: _num(v) for k, v in scores.items()},
        fold_scores=[_num(v) for v in final.fold_scores],
        trials=n_trials,
        time_s=round(time.time() - t0, 3),
        extra={
            "feature_choice": {
                "store": prob.store.path.name,
                "layer": choice.layer,
                "pool": choice.pool,
            },
            "trial_score": _num(trial_score),
            "study": study_name,
            "storage": storage_label(prob.ws, study_name, storage) if study_name else None,
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
    run, saved = save_once(prob.ws, meta, oof, recipe or recipe_digest({"run": time.time()}),
                           fill=fill)  # fmt: skip
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
        study=study_name,
        trials=n_trials,
        oof=oof,
        oof_path=run.oof_path,
        time_s=meta.time_s,
        head=hd.name,
        encoder=encoder,
        warnings=prob.warnings,
        trial_score=trial_score,
    )
