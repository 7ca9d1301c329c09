"""Probability calibration, a registry keyed by name: ``temperature``, ``platt``, ``isotonic``.

A calibrator is fitted out-of-fold on the same folds as everything else (fit on the other
folds, apply to this one), so its before/after scores are honest; the calibrator fitted on all
rows is kept (as plain numbers) for test predictions.

- ``temperature``: one temperature on the log-probabilities (single-label), one per label
  (multi-label), fitted by minimizing the log-loss.
- ``platt``: a logistic regression on each class's log-odds (one-vs-rest; single-label rows
  renormalized).
- ``isotonic``: a monotone step function per class column (stored as its thresholds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classify.metrics import METRICS
from ..errors import DataError
from ..registry import Registry
from .encoding import Encoding
from .proba import EPS, binary_from_positive, finish, logit, sigmoid, softmax

ECE_BINS = 15


# -- scores ----------------------------------------------------------------------------------


def onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return y if y.ndim == 2 else np.eye(n_classes, dtype=np.int64)[y]


def log_loss(y: np.ndarray, p: np.ndarray, enc: Encoding) -> float:
    """Mean negative log-likelihood (multi-label: mean over labels of the binary log-loss)."""
    return METRICS["log_loss"](y, p, enc.task, enc.positive_index)


def brier(y: np.ndarray, p: np.ndarray, enc: Encoding) -> float:
    """Brier score: of the positive class (binary), summed over classes (multiclass), mean over
    labels (multi-label); the classify registry's ``brier``."""
    return METRICS["brier"](y, p, enc.task, enc.positive_index)


def reliability(conf: np.ndarray, hit: np.ndarray, bins: int = ECE_BINS):
    """Equal-width bins of confidence: (mean confidence, accuracy, count) per non-empty bin."""
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (a, b], as classify
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append((float(conf[m].mean()), float(hit[m].mean()), int(m.sum())))
    return rows


def confidence_pairs(y: np.ndarray, p: np.ndarray, enc: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs a reliability diagram and the ECE are computed on:
    positive-class probability (binary), top-label confidence (multiclass), every
    (item, label) probability (multi-label)."""
    if enc.task == "binary":
        k = enc.positive_index
        return p[:, k], (y == k).astype(float)
    if enc.task == "multiclass":
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    return p.ravel(), y.ravel().astype(float)


def ece(y: np.ndarray, p: np.ndarray, enc: Encoding, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins."""
    conf, hit = confidence_pairs(y, p, enc)
    return float(sum(n * abs(c - a) for c, a, n in reliability(conf, hit, bins)) / len(conf))


def calibration_scores(y: np.ndarray, p: np.ndarray, enc: Encoding) -> dict[str, float]:
    return {"log_loss": log_loss(y, p, enc), "brier": brier(y, p, enc), "ece": ece(y, p, enc)}


# -- calibrators -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibrator:
    name: str
    fit: Callable[[np.ndarray, np.ndarray, Encoding], dict[str, Any]]
    apply: Callable[[np.ndarray, dict[str, Any], Encoding], np.ndarray]


CALIBRATORS: Registry[Calibrator] = Registry("calibrator", flag="--calibrate")


def _columns(
    p: np.ndarray, y: np.ndarray, enc: Encoding
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(column, probabilities, 0/1 outcome) of each column calibrated one-vs-rest."""
    Y = onehot(y, p.shape[1])
    if enc.task == "binary":
        k = enc.positive_index
        return [(k, p[:, k], Y[:, k])]
    return [(c, p[:, c], Y[:, c]) for c in range(p.shape[1])]


def _assemble(cols: dict[int, np.ndarray], p: np.ndarray, enc: Encoding) -> np.ndarray:
    if enc.task == "binary":
        ((_k, pos),) = cols.items()
        return binary_from_positive(np.clip(pos, EPS, 1 - EPS), enc)
    out = np.column_stack([cols[c] for c in range(p.shape[1])])
    return finish(np.clip(out, EPS, 1 - EPS), enc)


def _nll_temperature(z: np.ndarray, y: np.ndarray, single: bool) -> float:
    from scipy.optimize import minimize_scalar  # here: --help lists calibrators without scipy

    def loss(log_t: float) -> float:
        t = np.exp(log_t)
        if single:
            q = softmax(z / t)
            return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], EPS, 1))))
        q = np.clip(sigmoid(z / t), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

    return float(np.exp(minimize_scalar(loss, bounds=(-4, 4), method="bounded").x))


def _temperature_fit(p: np.ndarray, y: np.ndarray, enc: Encoding) -> dict[str, Any]:
    if enc.single_label:
        return {"T": [_nll_temperature(np.log(np.clip(p, EPS, 1)), y, True)]}
    return {"T": [_nll_temperature(logit(p[:, c]), y[:, c], False) for c in range(p.shape[1])]}


def _temperature_apply(p: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
    T = np.asarray(params["T"])
    if enc.single_label:
        return finish(softmax(np.log(np.clip(p, EPS, 1)) / T[0]), enc)
    return finish(sigmoid(logit(p) / T), enc)


def _platt_fit(p: np.ndarray, y: np.ndarray, enc: Encoding) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    out = {}
    for c, col, target in _columns(p, y, enc):
        if target.min() == target.max():
            out[str(c)] = [0.0, float(logit(np.array([target.mean()]))[0])]
            continue
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(logit(col)[:, None], target)
        out[str(c)] = [float(lr.coef_[0, 0]), float(lr.intercept_[0])]
    return {"ab": out}


def _platt_apply(p: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
    cols = {int(c): sigmoid(a * logit(p[:, int(c)]) + b) for c, (a, b) in params["ab"].items()}
    return _assemble(cols, p, enc)


def _isotonic_fit(p: np.ndarray, y: np.ndarray, enc: Encoding) -> dict[str, Any]:
    from sklearn.isotonic import IsotonicRegression

    out = {}
    for c, col, target in _columns(p, y, enc):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(col, target)
        out[str(c)] = [iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()]
    return {"steps": out}


def _isotonic_apply(p: np.ndarray, params: dict[str, Any], enc: Encoding) -> np.ndarray:
    cols = {int(c): np.interp(p[:, int(c)], xs, ys) for c, (xs, ys) in params["steps"].items()}
    return _assemble(cols, p, enc)


CALIBRATORS.register("temperature", Calibrator("temperature", _temperature_fit, _temperature_apply))
CALIBRATORS.register("platt", Calibrator("platt", _platt_fit, _platt_apply))
CALIBRATORS.register("isotonic", Calibrator("isotonic", _isotonic_fit, _isotonic_apply))


def calibrate_oof(
    p: np.ndarray, y: np.ndarray, folds: np.ndarray, enc: Encoding, method: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Calibrate out-of-fold probabilities honestly and fit the calibrator kept for test data.

    Returns:
        ``(calibrated oof, info)`` where info holds ``method``, ``params`` (fitted on all rows)
        and the ``before``/``after`` log-loss, Brier and ECE of the out-of-fold rows.

    Raises:
        ConfigError: unknown method. DataError: fewer than two folds.
    """
    cal = CALIBRATORS[method]
    if len(np.unique(folds)) < 2:
        raise DataError("calibration needs at least two folds in the out-of-fold predictions")
    out = np.zeros_like(p)
    for f in np.unique(folds):
        val = folds == f
        out[val] = cal.apply(p[val], cal.fit(p[~val], y[~val], enc), enc)
    info = {
        "method": method,
        "params": cal.fit(p, y, enc),
        "before": calibration_scores(y, p, enc),
        "after": calibration_scores(y, out, enc),
    }
    return out, info


def apply_calibration(p: np.ndarray, info: dict[str, Any] | None, enc: Encoding) -> np.ndarray:
    """Apply a saved calibration (``run.json``'s ``calibration``) to new probabilities."""
    if not info:
        return p
    return CALIBRATORS[info["method"]].apply(p, info["params"], enc)
