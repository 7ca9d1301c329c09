"""The head registry: logistic regression, XGBoost, CatBoost, LightGBM and (in its own module,
:mod:`.mlp`) a shallow MLP behind one interface.

A head knows its Optuna search space, its default parameters, how to fit on one fold's training
part (with an early-stopping set carved out of that training part, never the validation part),
how to predict probabilities, and how to save and load a fitted model in a safe native format:
logistic coefficients in ``.npz``, XGBoost ``.ubj``, CatBoost ``.cbm``, LightGBM's text models
in ``.lgbm.json``, the MLP's weights in ``.mlp.safetensors``.

Labels reach a head already remapped to the classes present in the training part: class indices
``0..n_out-1`` (single-label) or a 0/1 matrix without constant columns (multilabel).
"""

from __future__ import annotations

import json
import threading
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ..registry import Registry
from .budget import BudgetExceeded, past

DEFAULT_MAX_ROUNDS = 1000
EARLY_STOPPING = 30


@dataclass(frozen=True)
class FitContext:
    """What every head's ``fit`` needs besides data and parameters."""

    task: str  # binary | multiclass | multilabel
    n_out: int  # number of classes (single-label) or label columns (multilabel)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    max_rounds: int = DEFAULT_MAX_ROUNDS
    deadline: float | None = None  # time.monotonic() past which a fit stops (BudgetExceeded)
    stop: threading.Event | None = None  # set: fits stop at their next round (a pruned trial)
    # a boosted fit past this time.monotonic() adds no more rounds and returns what it has (the
    # share of a --timeout one fold may spend); unlike ``deadline`` it does not fail the fit
    round_deadline: float | None = None

    def expired(self) -> bool:
        """Past the deadline, or told to stop (boosting rounds check this)."""
        return past(self.deadline) or (self.stop is not None and self.stop.is_set())

    def stop_boosting(self) -> bool:
        """Whether a boosted fit should stop at this round: expired (the fit then fails, see
        :func:`_stopped`), or past the round deadline (it keeps the rounds so far)."""
        return self.expired() or past(self.round_deadline)


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights ``n / (k * count(class))`` (scikit-learn's ``class_weight='balanced'``)."""
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(counts) * counts))[inv].astype(np.float64)


def _stopped(ctx: FitContext) -> None:
    """After a boosted fit: fail it when its context expired (a deadline stays passed and a stop
    stays set, so this sees whatever stopped the rounds)."""
    if ctx.expired():
        raise BudgetExceeded("the time budget ran out during a fit")


class Head(ABC):
    """One family of classifiers."""

    name: str = ""
    needs_es = False  # wants an early-stopping set (boosting rounds, an MLP's epochs)
    trees = False  # splits on columns: `--pca auto` offers it PCA widths on very wide inputs
    standardizes = False  # the 'standardize' parameter belongs to the preprocessing
    scales_rounds = True  # the refit on the whole part scales the early-stopped rounds by 1/0.85

    @abstractmethod
    def space(self, trial: Any) -> dict[str, Any]:
        """Parameters suggested by an Optuna trial."""

    @abstractmethod
    def defaults(self) -> dict[str, Any]:
        """The untuned parameters."""

    @abstractmethod
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        params: dict[str, Any],
        ctx: FitContext,
        es: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Any:
        """A fitted model."""

    def rounds_used(self, model: Any) -> int | None:
        """Boosting rounds kept by early stopping (None for heads that do not stop early)."""
        return None

    def warm_start(self) -> dict[str, Any]:
        """A configuration known to work well, tried first by a new study (inside ``space``)."""
        return {}

    def fast_start(self) -> dict[str, Any]:
        """What changes in the first trial under ``--timeout``: fewer, larger steps, so that it
        converges in its share of the budget and leaves time for more trials."""
        return {}

    def gpu_support(self, task: str) -> tuple[bool, str]:
        """Whether this head can fit ``task`` on a GPU here, and if not, why."""
        return False, f"the {self.name} head runs on the CPU"

    @property
    def gpu_capable(self) -> bool:
        """A head with a GPU path of its own (its device choice is printed)."""
        return type(self).gpu_support is not Head.gpu_support

    @abstractmethod
    def predict(self, model: Any, x: np.ndarray, ctx: FitContext) -> np.ndarray:
        """Probabilities (n, n_out)."""

    @abstractmethod
    def save(self, model: Any, folder: Path, stem: str) -> str:
        """Write the model, return its file name."""

    @abstractmethod
    def load(self, folder: Path, name: str) -> Any:
        """Read a model written by :meth:`save`."""


# ------------------------------------------------------------------ logistic regression
@dataclass
class LinearModel:
    coef: np.ndarray  # (k, d)
    intercept: np.ndarray  # (k,)
    kind: str  # softmax | sigmoid (binary, one row) | multisigmoid


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class LogRegHead(Head):
    name = "logreg"
    standardizes = True

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            "C": trial.suggest_float("C", 1e-4, 1e2, log=True),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
            "standardize": trial.suggest_categorical("standardize", [True, False]),
        }

    def defaults(self) -> dict[str, Any]:
        return {"C": 1.0, "class_weight": "none", "standardize": True}

    def warm_start(self) -> dict[str, Any]:
        # the defaults, so that a tuned study is never below them (on the screened features)
        return self.defaults()

    def _one(self, x: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> Any:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        cw = None if params.get("class_weight", "none") == "none" else "balanced"
        clf = LogisticRegression(C=float(params["C"]), class_weight=cw, max_iter=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(x, y)

    def fit(self, x, y, params, ctx, es=None):
        if ctx.task == "multilabel":
            fits = [self._one(x, y[:, j], params, ctx) for j in range(y.shape[1])]
            coef = np.concatenate([f.coef_ for f in fits]).astype(np.float64)
            icpt = np.concatenate([f.intercept_ for f in fits]).astype(np.float64)
            return LinearModel(coef, icpt, "multisigmoid")
        clf = self._one(x, y, params, ctx)
        kind = "sigmoid" if ctx.n_out == 2 else "softmax"
        return LinearModel(clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64), kind)

    def predict(self, model, x, ctx):
        z = x.astype(np.float64) @ model.coef.T + model.intercept
        if model.kind == "sigmoid":
            p = _sigmoid(z[:, 0])
            return np.stack([1 - p, p], axis=1)
        if model.kind == "multisigmoid":
            return _sigmoid(z)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, model, folder, stem):
        name = f"{stem}.npz"
        np.savez(
            folder / name, coef=model.coef, intercept=model.intercept, kind=np.array(model.kind)
        )
        return name

    def load(self, folder, name):
        with np.load(folder / name, allow_pickle=False) as z:
            return LinearModel(z["coef"], z["intercept"], str(z["kind"]))


# ------------------------------------------------------------------ XGBoost
def _xgb() -> Any:
    try:
        import xgboost
    except ImportError as e:
        raise MissingDependencyError("xgboost-cpu", "the xgb head", extra="cpu") from e
    return xgboost


def _weights(y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> np.ndarray | None:
    if params.get("class_weight", "none") != "balanced" or ctx.task == "multilabel":
        return None
    return balanced_weights(y)


def _xgb_deadline(xgb: Any, ctx: FitContext) -> Any:
    """An XGBoost callback that stops training when ``ctx`` says so."""

    class Deadline(xgb.callback.TrainingCallback):  # type: ignore[misc, name-defined]
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return ctx.stop_boosting()

    return Deadline()


def _xgb_best_iteration(booster: Any) -> int | None:
    """The early-stopping best round, or None when early stopping never recorded one.

    XGBoost's callbacks run in order and stop at the first that asks to: when the round deadline
    ends training before the early-stopping callback has seen a round, ``best_iteration`` is not
    set and reading it raises ``AttributeError`` (xgboost 3.x). The booster then keeps all its
    rounds.
    """
    try:
        return int(booster.best_iteration)
    except AttributeError:
        return None


class XGBHead(Head):
    name = "xgb"
    needs_es = True
    trees = True
    max_bin = 32

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            # a trial's cost is its rounds: below 0.1, early stopping ran 500-1000 rounds a fold
            # (3000 FSDD items) for 0.005 accuracy over the best trial at 0.1-0.3
            # (docs/benchmarks.md)
            "learning_rate": trial.suggest_float("learning_rate", 0.1, 0.3, log=True),
            # softmax hessians are p(1-p) per row: with 50 classes a row weighs ~0.02, so a
            # floor of 1 would ask for ~50 rows per leaf; the range reaches well below
            "min_child_weight": trial.suggest_float("min_child_weight", 1e-3, 10.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            # embeddings are wide and their columns correlated: a column sample regularizes
            # and cuts the split search in proportion
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.1, 0.8),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-8, 10.0, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
        }

    def defaults(self) -> dict[str, Any]:
        return {
            "max_depth": 6,
            "learning_rate": 0.3,
            "min_child_weight": 1.0,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "reg_alpha": 0.0,
            "reg_lambda": 1.0,
        }

    def _params(self, params: dict[str, Any], ctx: FitContext) -> dict[str, Any]:
        p: dict[str, Any] = {
            "tree_method": "hist",
            "max_bin": self.max_bin,
            "device": ctx.device,
            "nthread": ctx.threads,
            "seed": ctx.seed,
            "verbosity": 0,
            "max_depth": int(params["max_depth"]),
            "eta": float(params["learning_rate"]),
            "min_child_weight": float(params["min_child_weight"]),
            "subsample": float(params["subsample"]),
            "colsample_bytree": float(params["colsample_bytree"]),
            "alpha": float(params["reg_alpha"]),
            "lambda": float(params["reg_lambda"]),
        }
        if ctx.task == "multiclass" and ctx.n_out > 2:
            p.update(objective="multi:softprob", num_class=ctx.n_out, eval_metric="mlogloss")
        else:
            p.update(objective="binary:logistic", eval_metric="logloss")
        return p

    def fit(self, x, y, params, ctx, es=None):
        xgb = _xgb()
        w = _weights(y, params, ctx)
        dtrain = xgb.QuantileDMatrix(x, label=y, weight=w, max_bin=self.max_bin)
        kw: dict[str, Any] = {}
        if es is not None:
            des = xgb.QuantileDMatrix(es[0], label=es[1], ref=dtrain, max_bin=self.max_bin)
            kw = {"evals": [(des, "es")], "early_stopping_rounds": EARLY_STOPPING}
        booster = xgb.train(
            self._params(params, ctx),
            dtrain,
            num_boost_round=ctx.max_rounds,
            verbose_eval=False,
            callbacks=[_xgb_deadline(xgb, ctx)],
            **kw,
        )
        _stopped(ctx)
        best = _xgb_best_iteration(booster) if es is not None else None
        if best is not None:
            booster = booster[: best + 1]
        return booster

    def rounds_used(self, model):
        return int(model.num_boosted_rounds())

    def gpu_support(self, task: str) -> tuple[bool, str]:
        try:
            built = _xgb().build_info().get("USE_CUDA", False)
        except MissingDependencyError:
            return False, "xgboost is not installed"
        if not built:
            return False, "this xgboost is built without CUDA (pip install 'sslstack[gpu]')"
        return True, ""

    def warm_start(self) -> dict[str, Any]:
        # shallow trees on a column sample: on wide, dense, correlated embeddings this scored
        # as well as depth 6 on 80 % of the columns at half the cost (docs/benchmarks.md)
        return {
            "max_depth": 4,
            "learning_rate": 0.1,
            "min_child_weight": 0.1,
            "subsample": 0.8,
            "colsample_bytree": 0.4,
            "reg_alpha": 1e-8,
            "reg_lambda": 1.0,
            "class_weight": "none",
        }

    def fast_start(self) -> dict[str, Any]:
        return {"learning_rate": 0.3, "colsample_bytree": 0.2}

    def predict(self, model, x, ctx):
        xgb = _xgb()
        p = model.predict(xgb.DMatrix(x))
        if p.ndim == 1:
            return np.stack([1 - p, p], axis=1)
        return p

    def save(self, model, folder, stem):
        name = f"{stem}.ubj"
        model.save_model(str(folder / name))
        return name

    def load(self, folder, name):
        xgb = _xgb()
        booster = xgb.Booster()
        booster.load_model(str(folder / name))
        return booster


# ------------------------------------------------------------------ CatBoost
class _CatDeadline:
    """A CatBoost callback that stops training when ``ctx`` says so (CPU only)."""

    def __init__(self, ctx: FitContext) -> None:
        self.ctx = ctx

    def after_iteration(self, info: Any) -> bool:
        return not self.ctx.stop_boosting()


CAT_PARAMS = ("depth", "learning_rate", "l2_leaf_reg", "border_count", "rsm")


class CatBoostHead(Head):
    name = "catboost"
    needs_es = True
    trees = True

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            # a MultiClass tree's cost grows with depth x columns x classes: 50 classes on
            # 1360 x 192 took 0.58 s a round at depth 6 on all columns, 0.085 s with rsm 0.2
            # (2 busy cores, docs/benchmarks.md), so the column sample and depth are bounded
            "depth": trial.suggest_int("depth", 3, 7),
            "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 1.0, 10.0, log=True),
            "border_count": trial.suggest_categorical("border_count", [32, 64, 128]),
            "rsm": trial.suggest_float("rsm", 0.05, 0.6, log=True),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
        }

    def defaults(self) -> dict[str, Any]:
        return {"depth": 6, "l2_leaf_reg": 3.0}  # learning rate: CatBoost's own choice

    def options(self, params: dict[str, Any], ctx: FitContext) -> dict[str, Any]:
        """CatBoostClassifier's keyword arguments for ``params`` under ``ctx``."""
        loss = {"binary": "Logloss", "multilabel": "MultiLogloss"}.get(ctx.task, "MultiClass")
        if ctx.task == "multiclass" and ctx.n_out == 2:
            loss = "Logloss"
        gpu = ctx.device == "cuda"
        kw = {k: v for k, v in params.items() if k in CAT_PARAMS and not (gpu and k == "rsm")}
        if params.get("class_weight") == "balanced" and ctx.task != "multilabel":
            kw["auto_class_weights"] = "Balanced"
        return {
            "iterations": ctx.max_rounds,
            "loss_function": loss,
            "random_seed": ctx.seed,
            "thread_count": ctx.threads,
            "task_type": "GPU" if gpu else "CPU",
            # ordered boosting costs ~15 % more a round for nothing on dense embeddings
            "boosting_type": "Plain",
            "verbose": False,
            "allow_writing_files": False,
            **kw,
        }

    def fit(self, x, y, params, ctx, es=None):
        try:
            from catboost import CatBoostClassifier
        except ImportError as e:
            raise MissingDependencyError("catboost", "the catboost head") from e
        model = CatBoostClassifier(**self.options(params, ctx))
        kw: dict[str, Any] = (
            {"eval_set": (es[0], es[1]), "early_stopping_rounds": EARLY_STOPPING} if es else {}
        )
        if ctx.device != "cuda":  # CatBoost takes user callbacks on the CPU only
            kw["callbacks"] = [_CatDeadline(ctx)]
        model.fit(x, y, **kw)
        _stopped(ctx)
        return model

    def warm_start(self) -> dict[str, Any]:
        # 50 classes, 2000 x 192 (benchmarks/heads.py --autogluon synth50): 0.688 out-of-fold
        # accuracy in 182 s for the 5 folds of 1000 rounds on one thread of a busy machine
        return {
            "depth": 4,
            "learning_rate": 0.2,
            "l2_leaf_reg": 3.0,
            "border_count": 32,
            "rsm": 0.2,
            "class_weight": "none",
        }

    def fast_start(self) -> dict[str, Any]:
        return {"learning_rate": 0.3, "rsm": 0.1}

    def gpu_support(self, task: str) -> tuple[bool, str]:
        if task == "multilabel":
            return False, "CatBoost's MultiLogloss runs on the CPU only"
        try:
            from catboost.utils import get_gpu_device_count
        except ImportError:
            return False, "catboost is not installed"
        if get_gpu_device_count() < 1:
            return False, "CatBoost sees no CUDA device"
        return True, ""

    def rounds_used(self, model):
        best = model.get_best_iteration()
        return int(best) + 1 if best is not None else int(model.tree_count_)

    def predict(self, model, x, ctx):
        return np.asarray(model.predict_proba(x), dtype=np.float64)

    def save(self, model, folder, stem):
        name = f"{stem}.cbm"
        model.save_model(str(folder / name))
        return name

    def load(self, folder, name):
        from catboost import CatBoostClassifier

        return CatBoostClassifier().load_model(str(folder / name))


# ------------------------------------------------------------------ LightGBM
def _lgb() -> Any:
    try:
        import lightgbm
    except ImportError as e:
        raise MissingDependencyError("lightgbm", "the lgbm head", extra="lgbm") from e
    return lightgbm


@dataclass
class LGBMModel:
    """LightGBM boosters: one (binary, multiclass) or one per label column (multilabel)."""

    boosters: list[Any]
    kind: str  # binary | multiclass | multilabel


class LGBMHead(Head):
    """LightGBM: leaf-wise trees on histograms (AutoGluon's first model on tabular data).

    Multilabel tasks fit one binary booster per label column (LightGBM has no multi-target
    objective). No GPU path: LightGBM's pip wheel is built without CUDA.
    """

    name = "lgbm"
    needs_es = True
    trees = True

    def space(self, trial: Any) -> dict[str, Any]:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
            # with 50 classes a class may hold 20-30 rows of a training part: leaves must be
            # allowed to be small, and the hessian floor low (softmax hessians are p(1-p))
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 2, 40, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.1, 0.8),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
            "max_bin": trial.suggest_categorical("max_bin", [15, 31, 63]),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"]),
        }

    def defaults(self) -> dict[str, Any]:
        return {
            "num_leaves": 31,
            "learning_rate": 0.1,
            "min_data_in_leaf": 20,
            "feature_fraction": 1.0,
            "bagging_fraction": 1.0,
            "lambda_l2": 0.0,
            "max_bin": 255,
        }

    def warm_start(self) -> dict[str, Any]:
        return {
            "num_leaves": 8,
            "learning_rate": 0.2,
            "min_data_in_leaf": 5,
            "feature_fraction": 0.3,
            "bagging_fraction": 0.8,
            "lambda_l2": 1.0,
            "max_bin": 31,
            "class_weight": "none",
        }

    def fast_start(self) -> dict[str, Any]:
        return {"learning_rate": 0.3, "feature_fraction": 0.2}

    def _params(self, params: dict[str, Any], ctx: FitContext, objective: str) -> dict[str, Any]:
        bag = float(params.get("bagging_fraction", 1.0))
        p: dict[str, Any] = {
            "objective": objective,
            "num_leaves": int(params["num_leaves"]),
            "learning_rate": float(params["learning_rate"]),
            "min_data_in_leaf": int(params["min_data_in_leaf"]),
            "min_sum_hessian_in_leaf": 1e-3,
            "feature_fraction": float(params.get("feature_fraction", 1.0)),
            "bagging_fraction": bag,
            "bagging_freq": 1 if bag < 1.0 else 0,
            "lambda_l2": float(params.get("lambda_l2", 0.0)),
            "max_bin": int(params.get("max_bin", 255)),
            "num_threads": ctx.threads,
            "seed": ctx.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        if objective == "multiclass":
            p["num_class"] = ctx.n_out
        return p

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        params: dict[str, Any],
        ctx: FitContext,
        objective: str,
        es: tuple[np.ndarray, np.ndarray] | None,
        weight: np.ndarray | None,
    ) -> Any:
        lgb = _lgb()
        p = self._params(params, ctx, objective)
        binning = {"max_bin": p["max_bin"], "verbose": -1}
        dtrain = lgb.Dataset(x, label=y, weight=weight, params=binning, free_raw_data=True)

        def deadline(env: Any) -> None:
            if ctx.stop_boosting():
                raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

        callbacks: list[Any] = [deadline]
        kw: dict[str, Any] = {}
        if es is not None:
            kw["valid_sets"] = [lgb.Dataset(es[0], label=es[1], reference=dtrain)]
            callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
        booster = lgb.train(p, dtrain, num_boost_round=ctx.max_rounds, callbacks=callbacks, **kw)
        _stopped(ctx)
        return booster

    def fit(self, x, y, params, ctx, es=None):
        w = _weights(y, params, ctx)
        if ctx.task == "multilabel":
            boosters = []
            for j in range(y.shape[1]):
                es_j = None if es is None else (es[0], es[1][:, j])
                boosters.append(self._train(x, y[:, j], params, ctx, "binary", es_j, None))
            return LGBMModel(boosters, "multilabel")
        if ctx.n_out > 2:
            return LGBMModel([self._train(x, y, params, ctx, "multiclass", es, w)], "multiclass")
        return LGBMModel([self._train(x, y, params, ctx, "binary", es, w)], "binary")

    def rounds_used(self, model):
        # the longest of a multilabel task's boosters: one refit length serves all columns
        return max(_lgb_rounds(b) for b in model.boosters)

    def predict(self, model, x, ctx):
        ps = [b.predict(x, num_iteration=_lgb_rounds(b)) for b in model.boosters]
        if model.kind == "multiclass":
            return np.asarray(ps[0], dtype=np.float64)
        if model.kind == "binary":
            p = np.asarray(ps[0], dtype=np.float64)
            return np.stack([1 - p, p], axis=1)
        return np.stack(ps, axis=1).astype(np.float64)

    def save(self, model, folder, stem):
        name = f"{stem}.lgbm.json"
        doc = {
            "kind": model.kind,
            "boosters": [b.model_to_string(num_iteration=_lgb_rounds(b)) for b in model.boosters],
        }
        (folder / name).write_text(json.dumps(doc), encoding="utf-8")
        return name

    def load(self, folder, name):
        lgb = _lgb()
        doc = json.loads((folder / name).read_text(encoding="utf-8"))
        return LGBMModel([lgb.Booster(model_str=s) for s in doc["boosters"]], str(doc["kind"]))


def _lgb_rounds(booster: Any) -> int:
    """Rounds a LightGBM booster keeps: the early-stopping best, else all it trained."""
    best = int(getattr(booster, "best_iteration", 0) or 0)
    return best if best > 0 else int(booster.current_iteration())


HEADS: Registry[Head] = Registry("head", flag="HEAD")
for _h in (LogRegHead(), XGBHead(), CatBoostHead(), LGBMHead()):
    HEADS.register(_h.name, _h)

from . import mlp  # noqa: E402, F401  (registers the MLP head, kept in its own module)


def names() -> list[str]:
    return HEADS.names()


def get_head(name: str) -> Head:
    """The head called ``name``.

    Raises:
        ConfigError: unknown head (the known ones are listed).
    """
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose from {', '.join(names())}")
    return HEADS[name]
