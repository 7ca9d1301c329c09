"""The search of ``fit_head``: an Optuna study over a head's space and the feature choices.

:func:`search` opens (or continues) the study, enqueues its warm first trial, runs trials through
a :class:`~.trials.TrialLoop` under the command's budget, and returns the best configuration
with what the refit needs (the early-stopping rounds of its folds, its fold models when this
process holds them) and the notes to print. Fitting a configuration is the caller's
:class:`Evaluate` callable, so the search never reads features itself.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from optuna.trial import TrialState

from ..errors import ConfigError, RunError
from .budget import Budget, BudgetExceeded
from .cv import CVOptions, CVOutcome
from .features import FeatureChoice, default_choice
from .heads import Head
from .metrics import Metric
from .preprocess import LDA
from .probing import probe_record
from .problem import Problem
from .trials import TrialLoop
from .tuning import finished_trials, open_study, optimize, report_fold, storage_label
from .warm import probe_choice, screen_features

if TYPE_CHECKING:
    from .fitconfig import FitConfig

PCA_WIDTHS = (32, 64, 128, 256)
PCA_AUTO_ABOVE = 2048  # `--pca auto` offers PCA widths to boosted heads above this width
# ... and under --timeout above this one: on 60 classes x 1024-d (FSDD digit x speaker, BirdNET)
# a round at full width costs ~16x one on 64 components, and a 150 s budget bought XGBoost 1-7
# rounds a fold (0.674) at full width against 40-284 on PCA 64 (0.910; docs/benchmarks.md)
PCA_BUDGET_ABOVE = 256
PCA_BUDGET_WIDTHS = (32, 64, 128)
PCA_BUDGET_START = 64  # the first trial's width under --timeout on features that wide ...
# ... or, on three classes or more (single-label), the shrunk LDA projection: 60 classes, BirdNET,
# one fold, XGBoost at 100 rounds scored 0.963 on it against 0.898 on PCA 64 (docs/benchmarks.md)
# under --timeout a boosted (or MLP) study prunes by successive halving over folds: its few
# trials all fall in a median pruner's start-up (docs/benchmarks.md measures both)
BUDGET_PRUNER = "sha"
ES_ROUNDS_ATTR = "es_rounds"  # trial attribute: per fold, the rounds early stopping chose
CUT_ATTR = "budget_cut"  # trial attribute: folds whose boosting the budget ended, not early stop


class Evaluate(Protocol):
    """Cross-validate ``params`` on the features ``choice`` (``budget``: a trial's)."""

    def __call__(
        self,
        choice: FeatureChoice,
        params: dict[str, Any],
        opts: CVOptions,
        budget: Budget | None = None,
    ) -> CVOutcome: ...


@dataclass(frozen=True)
class Space:
    """What the search may choose besides the head's parameters."""

    layers: list[str]
    pools: list[str]
    pcas: list[int]
    windows: str | None = None  # fit on windows, aggregated per clip by this
    max_rounds: int | None = None  # the cap on boosting rounds (part of a study's identity)


@dataclass
class Found:
    """The outcome of a search: the best configuration and what the refit needs."""

    best: dict[str, Any]  # the head's parameters with layer, pool and pca
    study: str | None = None
    storage: str | None = None  # where the study lives, printable
    trials: int = 0  # finished trials of the study
    trial_score: float | None = None  # the best trial's fold mean
    rounds: list[int] | None = None  # per fold, the rounds early stopping chose
    kept: CVOutcome | None = None  # the best trial's own fold models, when this process ran it
    notes: list[str] = field(default_factory=list)


def pca_choices(
    pca: str | int, head: Head, dim: int, budget_s: float | None = None, classes: int = 0
) -> list[int]:
    """The PCA widths ``--pca`` offers ``head`` on ``dim``-wide features (0: none; ``LDA``: the
    shrunk discriminant projection, for ``classes`` >= 3 of a single-label task, else 0);
    ``budget_s``: the ``--timeout``, under which ``auto`` offers trees these sooner.

    Raises:
        ConfigError: an unknown ``--pca`` value.
    """
    if isinstance(pca, int) or (isinstance(pca, str) and pca.isdigit()):
        width = int(pca)
        return [width if width < dim else 0]
    if pca == "off":
        return [0]
    if pca == "lda":
        if classes < 3:
            raise ConfigError("--pca lda: needs a single-label task of three classes or more")
        return [LDA]
    if pca == "auto":
        # PCA mixes the columns trees split on: on 768-wide wav2vec2 features, PCA trials
        # scored 0.24-0.28 against 0.32-0.35 at full width (docs/benchmarks.md), so only very
        # wide inputs (concatenated layers or poolings) get the narrow widths as options
        if head.trees and budget_s and dim > PCA_BUDGET_ABOVE:
            lda = [LDA] if classes >= 3 else []
            return [0, *lda] + [w for w in PCA_BUDGET_WIDTHS if w < dim]
        if not head.trees or dim <= PCA_AUTO_ABOVE:
            return [0]
        return [0] + list(PCA_WIDTHS)
    if pca == "tune":
        return [0] + [w for w in PCA_WIDTHS if w < dim]
    raise ConfigError(f"--pca {pca!r}: use auto, off, tune, lda or a width such as 64")


def search(
    evaluate: Evaluate,
    prob: Problem,
    hd: Head,
    met: Metric,
    space: Space,
    cfg: FitConfig,
    loop: TrialLoop,
) -> Found:
    """Tune ``hd`` on ``prob`` as ``cfg`` (a ``FitConfig``) asks, through ``loop`` (a
    :class:`TrialLoop`, whose budget bounds every trial). ``cfg.trials == 0``: the head's
    defaults on the default features, no study.

    Raises:
        RunError: no trial of the study finished (one line saying what to change).
    """
    if cfg.trials == 0:
        choice = default_choice(space.layers, space.pools)
        return Found({**hd.defaults(), "layer": choice.layer, "pool": choice.pool,
                      "pca": space.pcas[0]})  # fmt: skip
    name = cfg.study or _study_name(prob, hd, met, space)
    pruner = BUDGET_PRUNER if cfg.timeout and hd.needs_es else "median"
    st = open_study(prob.ws, name, met.direction, storage=cfg.storage, seed=cfg.seed,
                    n_startup=min(5, max(2, cfg.trials // 5)), pruner=pruner)  # fmt: skip
    # a study whose trials all failed (stopped by a budget, killed) still starts warm
    if all(t.state == TrialState.FAIL for t in st.trials) and hd.warm_start():
        warm, source = _warm_features(prob, met, space)
        st.enqueue_trial(_warm_params(hd, warm, space, cfg.timeout))
        note = f"first trial: features {warm.layer}/{warm.pool} ({source})"
        loop.emit(stage="note", trial=None, fold=None, score=None, message=note)
    cut_trials: list[int] = []
    objective = _objective(evaluate, hd, space, loop, cut_trials)
    optimize(st, loop.objective(objective), cfg.trials, None, loop.after_trial,
             catch=(BudgetExceeded,))  # fmt: skip
    try:
        bt = st.best_trial
    except ValueError:
        raise RunError(_no_trial(loop, cfg.timeout, name)) from None
    found = Found(
        {"layer": space.layers[0], "pool": space.pools[0], "pca": space.pcas[0], **bt.params},
        study=name,
        storage=storage_label(prob.ws, name, cfg.storage),
        trials=finished_trials(st),
        trial_score=st.best_value,
        rounds=bt.user_attrs.get(ES_ROUNDS_ATTR),
    )
    if loop.keeps_best(bt.number) and loop.best is not None:
        found.kept = loop.best.outcome
    if cut_trials:
        found.notes.append(_cut_note(cfg.timeout, cut_trials, bt, found.rounds, loop.folds, hd))
    if loop.stopped is not None:
        found.notes.append(
            f"--timeout {cfg.timeout:g}: trial stopped at the budget after {loop.stopped} of "
            f"{loop.folds} folds (not counted); kept the best finished trial "
            f"#{bt.number} ({_fmt(found.trial_score)})"
        )
    return found


def _objective(
    evaluate: Evaluate, hd: Head, space: Space, loop: TrialLoop, cut_trials: list[int]
) -> Any:
    """``run(trial, budget)`` for :meth:`TrialLoop.objective`: one configuration, all folds."""

    def run_trial(trial: Any, budget: Budget) -> CVOutcome:
        la = _suggest(trial, "layer", space.layers)
        po = _suggest(trial, "pool", space.pools)
        width = _suggest(trial, "pca", space.pcas)
        params = hd.space(trial)

        def report(k: int, m: float) -> None:
            loop.fold_done(trial, k, m)
            report_fold(trial, k, m)

        opts = CVOptions(pca=width, refit=hd.refit_in_trials, keep_models=True, report=report)
        out = evaluate(FeatureChoice(la, po), params, opts, budget)
        if all(r is not None for r in out.es_rounds):
            trial.set_user_attr(ES_ROUNDS_ATTR, out.es_rounds)
        if any(out.cut):
            trial.set_user_attr(CUT_ATTR, int(sum(out.cut)))
            cut_trials.append(trial.number)
        return out

    return run_trial


def _study_name(prob: Problem, hd: Head, met: Metric, space: Space) -> str:
    keys: dict[str, Any] = {"layers": space.layers, "pools": space.pools, "pca": space.pcas}
    if space.windows:
        keys["windows"] = space.windows
    if hd.needs_es:
        keys["max_rounds"] = space.max_rounds
    blob = json.dumps(
        {**keys, "folds": prob.folds.digest, "enc": prob.enc.to_dict()}, sort_keys=True
    )
    h = hashlib.sha1(blob.encode()).hexdigest()[:8]
    return f"{hd.name}-{prob.store.path.name}-{prob.dataset}-{met.name}-{h}"


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


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


def _warm_features(prob: Problem, met: Metric, space: Space) -> tuple[FeatureChoice, str]:
    """The first trial's features and where they come from: the best choice of this store's
    saved probe on this dataset and metric, else the best of a ridge screen."""
    layers, pools = space.layers, space.pools
    record = probe_record(prob.ws, prob.store.path.name, prob.dataset, met.name)
    found = probe_choice(record, layers, pools, met.greater_is_better)
    if found is not None:
        return found[0], f"the best of 'sslstack probe', {met.name} {found[1]:.4f}"
    warm = screen_features(prob.reader, prob.y, prob.enc, prob.splits, met, layers, pools)
    return warm, "the best of a ridge screen over the feature choices"


def _warm_params(
    hd: Head, warm: FeatureChoice, space: Space, budget_s: float | None = None
) -> dict[str, Any]:
    """The first trial of a new study: the head's known-good parameters on ``warm`` (with its
    fast start under a time budget)."""
    start: dict[str, Any] = {**hd.warm_start(), **(hd.fast_start() if budget_s else {})}
    if len(space.layers) > 1:
        start["layer"] = warm.layer
    if len(space.pools) > 1:
        start["pool"] = warm.pool
    if len(space.pcas) > 1:
        # under a budget, wide features start narrow: full-width rounds would not converge
        narrow = [w for w in (LDA, PCA_BUDGET_START) if w in space.pcas] if budget_s else []
        start["pca"] = narrow[0] if narrow else 0
    return start


def _suggest(trial: Any, name: str, choices: list[Any]) -> Any:
    return trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]
