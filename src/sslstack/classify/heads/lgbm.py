"""LightGBM: leaf-wise trees on histograms; models saved as text in ``.lgbm.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import MissingDependencyError
from .base import EARLY_STOPPING, HEADS, FitContext, Head, class_weights, raise_if_expired


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
        raise_if_expired(ctx)
        return booster

    def fit(self, x, y, params, ctx, es=None):
        w = class_weights(y, params, ctx)
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


HEADS.register(LGBMHead.name, LGBMHead())
