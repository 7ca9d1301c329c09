"""XGBoost: histogram trees on a column sample; models saved as ``.ubj``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import MissingDependencyError
from .base import EARLY_STOPPING, HEADS, FitContext, Head, class_weights, raise_if_expired


def _xgb() -> Any:
    try:
        import xgboost
    except ImportError as e:
        raise MissingDependencyError("xgboost-cpu", "the xgb head", extra="cpu") from e
    return xgboost


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
        w = class_weights(y, params, ctx)
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
        raise_if_expired(ctx)
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


HEADS.register(XGBHead.name, XGBHead())
