"""Stack methods, a registry keyed by name: ``best_single``, ``mean``, ``rank``, ``greedy``,
``logreg``.

Every method has the same two steps. ``fit(P, y, folds, scorer, **opts)`` takes base
out-of-fold probabilities ``P`` of shape ``(R, n, C)`` and returns the stack's own out-of-fold
probabilities (n, C) and JSON-ready ``params``; ``apply(P, params, enc)`` combines new base
predictions with those params (for test sets). Nothing here pickles: params are lists of floats.

Every method's out-of-fold probabilities are honest: what a method learns from the rows (which
run is best, greedy weights, meta-learner coefficients) is fitted on the other folds for each
fold's rows. The params returned, used for new items, are fitted on all rows.

- ``best_single``: the best base run (chosen per fold on the other folds).
- ``mean``: plain average of probabilities.
- ``rank``: average of per-column ranks (scaled to (0, 1]); single-label rows renormalized.
- ``greedy``: ensemble selection with replacement (Caruana et al. 2004; AutoGluon's weighted
  ensemble): start empty, add the run that most improves the metric, weights = counts / size,
  cut at the best iteration. Each fold's rows use weights chosen on the other folds (the
  former ``greedy_nested``, still a name of it); the saved weights are chosen on all rows.
- ``logreg``: L2 logistic regression on the base runs' out-of-fold log-odds, fitted fold by fold
  on the same folds (fit on the other folds, predict this one), so its out-of-fold score is
  measured on rows it did not train on. Binary: one weight per run on the positive log-odds;
  multi-label: the same per label; multiclass: a softmax over ``sum_r w_r log p_rc + b_c``
  (one weight per run shared by the classes, a bias per class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classify.metrics import Metric
from ..errors import ConfigError
from ..registry import Registry
from .encoding import Encoding
from .proba import EPS, binary_from_positive, finish, logit, sigmoid, softmax

FitFn = Callable[..., tuple[np.ndarray, dict[str, Any]]]
ApplyFn = Callable[[np.ndarray, dict[str, Any], Encoding], np.ndarray]


@dataclass(frozen=True)
class StackMethod:
    """One way of combining base runs."""

    name: str
    fit: FitFn
    apply: ApplyFn
    description: str


METHODS: Registry[StackMethod] = Registry("stack method", flag="--method")


def register_method(name: str, description: str) -> Callable[[type], type]:
    """Class decorator: a class with static ``fit`` and ``apply`` becomes a registry entry."""

    def deco(cls: type) -> type:
        METHODS.register(name, StackMethod(name, cls.fit, cls.apply, description))  # type: ignore[attr-defined]
        return cls

    return deco


# -- mean and rank ---------------------------------------------------------------------------


def _weighted(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
    return finish(np.tensordot(np.asarray(params["weights"]), P, axes=1), enc)


def best_run(P: np.ndarray, y: np.ndarray, scorer: Metric) -> int:
    """Index of the best-scoring run on these rows (ties: the lower index)."""
    best, best_s = 0, scorer(y, P[0])
    for j in range(1, len(P)):
        s = scorer(y, P[j])
        if scorer.better(s, best_s):
            best, best_s = j, s
    return best


@register_method("best_single", "the best base run, chosen on the other folds for each fold")
class _BestSingle:
    """No combination: the best run. Picking the best of R runs on the rows it is scored on
    flatters it as much as greedy weights do, so each fold's rows come from the run that was
    best on the other folds; predictions use the run best on all rows (one weight of 1)."""

    @staticmethod
    def fit(P: np.ndarray, y: np.ndarray, folds: np.ndarray, scorer: Metric, **_: Any):
        def one_hot(rows: np.ndarray) -> dict[str, Any]:
            w = np.zeros(len(P))
            w[best_run(P[:, rows], y[rows], scorer)] = 1.0
            return {"weights": w.tolist()}

        oof = out_of_fold(
            P, folds, one_hot, lambda Pv, params: _weighted(Pv, params, scorer.encoding)
        )
        return oof, one_hot(np.ones(len(y), dtype=bool))

    @staticmethod
    def apply(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
        return _weighted(P, params, enc)


@register_method("mean", "average of probabilities")
class _Mean:
    @staticmethod
    def fit(P: np.ndarray, y: np.ndarray, folds: np.ndarray, scorer: Metric, **_: Any):
        params = {"weights": [1.0 / len(P)] * len(P)}
        return _Mean.apply(P, params, scorer.encoding), params

    @staticmethod
    def apply(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
        return finish(np.tensordot(np.asarray(params["weights"]), P, axes=1), enc)


def rank_columns(p: np.ndarray) -> np.ndarray:
    """Each column's average ranks scaled to (0, 1]."""
    from scipy.stats import rankdata  # imported here: --help lists the methods without scipy

    return np.column_stack([rankdata(p[:, c]) / len(p) for c in range(p.shape[1])])


def rank_average(P: np.ndarray, weights: np.ndarray, enc: Encoding) -> np.ndarray:
    """Weighted average of per-column ranks; binary keeps the positive column's ranks."""
    if enc.task == "binary":
        k = enc.positive_index
        pos = sum(w * rank_columns(p[:, [k]])[:, 0] for w, p in zip(weights, P, strict=True))
        return binary_from_positive(np.asarray(pos), enc)
    avg = sum(w * rank_columns(p) for w, p in zip(weights, P, strict=True))
    return finish(np.asarray(avg), enc)


@register_method("rank", "average of per-class ranks")
class _Rank:
    @staticmethod
    def fit(P: np.ndarray, y: np.ndarray, folds: np.ndarray, scorer: Metric, **_: Any):
        params = {"weights": [1.0 / len(P)] * len(P)}
        return _Rank.apply(P, params, scorer.encoding), params

    @staticmethod
    def apply(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
        return rank_average(P, np.asarray(params["weights"]), enc)


# -- greedy ensemble selection ----------------------------------------------------------------


def greedy_weights(
    P: np.ndarray, y: np.ndarray, scorer: Metric, size: int = 25
) -> tuple[np.ndarray, list[float]]:
    """Caruana ensemble selection with replacement.

    Starting from an empty ensemble, ``size`` times add the run (repeats allowed) whose
    addition gives the best score of the averaged probabilities (ties: the lower index).
    The ensemble is cut at its best iteration (the first one reaching the best score).

    Returns:
        ``(weights, history)``: weights = counts / iterations kept (sum 1), and the score after
        each iteration.
    """
    if size < 1:
        raise ConfigError(f"greedy size {size}: must be at least 1")
    enc = scorer.encoding
    total = np.zeros(P.shape[1:])
    counts = np.zeros(len(P), dtype=np.int64)
    history: list[float] = []
    picks: list[int] = []
    for it in range(1, size + 1):
        best_j, best_s = -1, 0.0
        for j in range(len(P)):
            s = scorer(y, finish((total + P[j]) / it, enc))
            if best_j < 0 or scorer.better(s, best_s):
                best_j, best_s = j, s
        total += P[best_j]
        picks.append(best_j)
        history.append(best_s)
    best_it = 0
    for i, s in enumerate(history):
        if scorer.better(s, history[best_it]):
            best_it = i
    for j in picks[: best_it + 1]:
        counts[j] += 1
    return counts / counts.sum(), history


def out_of_fold(
    P: np.ndarray,
    folds: np.ndarray,
    fit_rows: Callable[[np.ndarray], Any],
    apply_rows: Callable[[np.ndarray, Any], np.ndarray],
) -> np.ndarray:
    """Honest predictions: each fold's rows from a combiner fitted on the other folds' rows.

    ``fit_rows(mask)`` fits on the rows where ``mask`` is true; ``apply_rows(P_rows, fitted)``
    predicts the given rows of every run."""
    oof = np.zeros(P.shape[1:])
    for f in np.unique(folds):
        val = folds == f
        oof[val] = apply_rows(P[:, val], fit_rows(~val))
    return oof


class _Greedy:
    """Ensemble selection, scored honestly: each fold's rows are predicted with weights chosen
    on the other folds only, so its out-of-fold score is measured on rows the weights never saw
    (as ``logreg``'s). Predictions use the weights chosen on all rows. (Weights chosen on every
    out-of-fold row, as AutoGluon does, score those rows optimistically: the stack table shows
    that figure beside the honest one.)"""

    @staticmethod
    def fit(
        P: np.ndarray,
        y: np.ndarray,
        folds: np.ndarray,
        scorer: Metric,
        *,
        greedy_size: int = 25,
        **_: Any,
    ):
        enc = scorer.encoding
        oof = out_of_fold(
            P,
            folds,
            lambda tr: {
                "weights": greedy_weights(P[:, tr], y[tr], scorer, greedy_size)[0].tolist()
            },
            lambda Pv, params: _weighted(Pv, params, enc),
        )
        w, history = greedy_weights(P, y, scorer, greedy_size)
        return oof, {"weights": w.tolist(), "history": history, "size": greedy_size}

    @staticmethod
    def apply(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
        return _weighted(P, params, enc)


register_method("greedy", "ensemble selection with replacement (Caruana 2004), weights chosen "
                "on the other folds for each fold's score")(_Greedy)  # fmt: skip
# the name of ``greedy`` when only it was nested (stacks saved under it still predict)
register_method("greedy_nested", "the same as greedy (its former honest variant)")(_Greedy)


# -- logistic-regression meta-learner ---------------------------------------------------------


def meta_features(P: np.ndarray, enc: Encoding, label: int | None = None) -> np.ndarray:
    """(n, R) inputs of a binary meta-learner: each run's log-odds of the positive class
    (binary) or of ``label`` (multi-label, one model per label)."""
    col = enc.positive_index if enc.task == "binary" else label
    return logit(P[:, :, col]).T


def _fit_lr(X: np.ndarray, y: np.ndarray, C: float) -> dict[str, Any]:
    """A fitted L2 logistic regression as plain lists (``classes`` present in ``y``)."""
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y)
    if len(classes) == 1:
        return {"classes": classes.tolist(), "coef": None, "intercept": None}
    lr = LogisticRegression(C=C, max_iter=2000)
    lr.fit(X, y)
    return {
        "classes": lr.classes_.tolist(),
        "coef": lr.coef_.tolist(),
        "intercept": lr.intercept_.tolist(),
    }


def _lr_proba(model: dict[str, Any], X: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities; classes absent from the training rows get 0."""
    out = np.zeros((len(X), n_classes))
    classes = model["classes"]
    if model["coef"] is None:
        out[:, classes[0]] = 1.0
        return out
    z = X @ np.asarray(model["coef"]).T + np.asarray(model["intercept"])
    if len(classes) == 2:
        p = sigmoid(z[:, 0])
        out[:, classes[0]], out[:, classes[1]] = 1 - p, p
    else:
        out[:, classes] = softmax(z)
    return out


def _fit_shared(X: np.ndarray, y: np.ndarray, n_classes: int, C: float) -> dict[str, Any]:
    """Multiclass meta-learner with one weight per base run shared by every class:
    ``z_c = sum_r w_r log p_rc + b_c`` (R + C parameters), L2 on ``w`` as scikit-learn scales it
    (mean log-loss + ||w||^2 / (2 C n)). Far fewer parameters than a full multinomial model on
    R*C inputs, so it does not overfit small folds."""
    from scipy.optimize import minimize

    R, n, _ = X.shape
    Y = np.eye(n_classes)[y]
    lam = 1.0 / (C * n)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:R], theta[R:]
        z = np.tensordot(w, X, axes=1) + b
        z = z - z.max(axis=1, keepdims=True)
        logq = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = (np.exp(logq) - Y) / n
        grad = np.concatenate([np.einsum("rnc,nc->r", X, g) + lam * w, g.sum(axis=0)])
        return float(-(Y * logq).sum() / n + 0.5 * lam * w @ w), grad

    theta0 = np.concatenate([np.full(R, 1.0 / R), np.zeros(n_classes)])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return {"w": res.x[:R].tolist(), "b": res.x[R:].tolist()}


def _fit_meta(P: np.ndarray, y: np.ndarray, enc: Encoding, C: float) -> dict[str, Any]:
    if enc.task == "multilabel":
        return {
            "per_label": [_fit_lr(meta_features(P, enc, c), y[:, c], C) for c in range(P.shape[2])]
        }
    if enc.task == "multiclass":
        return {"shared": _fit_shared(np.log(np.clip(P, EPS, 1.0)), y, P.shape[2], C)}
    return {"model": _fit_lr(meta_features(P, enc), (y == enc.positive_index).astype(np.int64), C)}


def _apply_meta(P: np.ndarray, meta: dict[str, Any], enc: Encoding) -> np.ndarray:
    if enc.task == "multilabel":
        cols = [
            _lr_proba(m, meta_features(P, enc, c), 2)[:, 1] for c, m in enumerate(meta["per_label"])
        ]
        return finish(np.column_stack(cols), enc)
    if enc.task == "binary":
        pos = _lr_proba(meta["model"], meta_features(P, enc), 2)[:, 1]
        return binary_from_positive(pos, enc)
    m = meta["shared"]
    z = np.tensordot(np.asarray(m["w"]), np.log(np.clip(P, EPS, 1.0)), axes=1) + np.asarray(m["b"])
    return finish(softmax(z), enc)


@register_method("logreg", "logistic regression on out-of-fold log-odds (fitted per fold)")
class _LogReg:
    @staticmethod
    def fit(
        P: np.ndarray,
        y: np.ndarray,
        folds: np.ndarray,
        scorer: Metric,
        *,
        logreg_c: float = 1.0,
        **_: Any,
    ):
        enc = scorer.encoding
        oof = out_of_fold(
            P,
            folds,
            lambda tr: _fit_meta(P[:, tr], y[tr], enc, logreg_c),
            lambda Pv, meta: _apply_meta(Pv, meta, enc),
        )
        params = {"C": logreg_c, **_fit_meta(P, y, enc, logreg_c)}
        return oof, params

    @staticmethod
    def apply(P: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
        return _apply_meta(P, params, enc)
