"""Logistic regression: the linear probe, tuned (``C``, class weights, standardization).

Its model is plain arrays, saved as ``.npz`` (no pickle): coefficients, intercepts and the output
kind (softmax, one sigmoid for binary tasks, one sigmoid per label column for multilabel).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import HEADS, FitContext, Head


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


HEADS.register(LogRegHead.name, LogRegHead())
