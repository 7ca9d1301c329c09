"""Shift between training and test by adversarial validation: can a classifier tell them apart?

The classifier is ridge regression on standardised features with the domain (0 train, 1 test)
as target, cross-validated over k stratified folds. It is solved from Gram matrices: one pass
over the rows accumulates ``X'X`` and ``X'y`` per fold (chunk by chunk), and each
fold's model is the solve of the totals minus that fold's share, so the cost is one pass plus
k small ``d x d`` solves whatever k is, and memory is the inputs plus ``k`` Gram matrices. A
linear model sees the shifts that matter most here (a band missing from the spectrum, another
microphone's colouring, a level change); its out-of-fold AUC is the verdict: about 0.5 means
the two sets cannot be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .near import BLOCK, standardise

# AUC bounds of the one-line verdict
VERDICTS = ((0.55, "no detectable shift"), (0.70, "mild shift"), (0.90, "shift"))


@dataclass(frozen=True)
class Shift:
    """Out-of-fold AUC of telling test from train, its verdict, each test item's out-of-fold
    "test-ness" score, the features whose means differ most (standardised difference) and the
    AUC's standard error."""

    auc: float
    verdict: str
    test_scores: np.ndarray
    features: list[tuple[int, float]] = field(default_factory=list)
    se: float = 0.0


def auc_se(auc: float, n_train: int, n_test: int) -> float:
    """Standard error of an AUC (Hanley and McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = auc * (1 - auc) + (n_test - 1) * (q1 - auc**2) + (n_train - 1) * (q2 - auc**2)
    return float(np.sqrt(max(var, 0.0) / max(n_train * n_test, 1)))


def verdict(auc: float, se: float = 0.0) -> str:
    """One phrase for an adversarial AUC (symmetric: 0.3 tells the sets apart as 0.7 does);
    an AUC within two standard errors of 0.5 is no detectable shift, whatever its value."""
    a = max(auc, 1.0 - auc)
    if a - 0.5 < 2 * se:
        return VERDICTS[0][1]
    for bound, text in VERDICTS:
        if a < bound:
            return text
    return "strong shift: test differs from training"


def _folds(n_train: int, n_test: int, k: int, seed: int) -> np.ndarray:
    """A fold per row (training rows first), stratified by domain."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_train + n_test, dtype=np.int64)
    for lo, n in ((0, n_train), (n_train, n_test)):
        out[lo : lo + n] = rng.permutation(np.arange(n) % k)
    return out


def _rows(train: np.ndarray, test: np.ndarray, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of the train-then-test stack, without building the stack."""
    n = len(train)
    parts = [train[a : min(b, n)]] if a < n else []
    if b > n:
        parts.append(test[max(a - n, 0) : b - n])
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def adversarial(
    train: np.ndarray,
    test: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    alpha: float = 0.1,
    block: int = BLOCK,
    top: int = 5,
) -> Shift:
    """Cross-validated AUC of a ridge classifier telling ``test`` rows from ``train`` rows.

    Args:
        train, test: ``(n, d)`` vectors of the two sets.
        folds: cross-validation folds.
        alpha: ridge penalty per training row (features are standardised, so ``X'X`` has
            about ``n`` on its diagonal).
        top: how many most shifted features to name.
    """
    from sklearn.metrics import roc_auc_score

    n_tr, n_te, d = len(train), len(test), train.shape[1]
    mean, scale = standardise(train, test, block=block)
    fold = _folds(n_tr, n_te, folds, seed)
    G = np.zeros((folds, d + 1, d + 1))
    b = np.zeros((folds, d + 1))
    for a in range(0, n_tr + n_te, block):
        x = _design(_rows(train, test, a, a + block), mean, scale)
        y = (np.arange(a, a + len(x)) >= n_tr).astype(np.float32)
        f = fold[a : a + len(x)]
        for k in range(folds):
            m = f == k
            G[k] += x[m].T @ x[m]
            b[k] += x[m].T @ y[m]
    Gt, bt = G.sum(axis=0), b.sum(axis=0)
    W = []
    for k in range(folds):
        g = Gt - G[k]
        reg = alpha * g[0, 0] * np.eye(d + 1)
        reg[0, 0] = 0.0  # the intercept is not penalised
        W.append(np.linalg.solve(g + reg, bt - b[k]))
    Ws = np.stack(W).astype(np.float32)
    score = np.empty(n_tr + n_te)
    for a in range(0, n_tr + n_te, block):
        x = _design(_rows(train, test, a, a + block), mean, scale)
        f = fold[a : a + len(x)]
        score[a : a + len(x)] = np.einsum("ij,ij->i", x, Ws[f])
    y = np.r_[np.zeros(n_tr), np.ones(n_te)]
    auc = float(roc_auc_score(y, score))
    se = auc_se(auc, n_tr, n_te)
    feats = _shifted(train, test, mean, scale, top, block)
    return Shift(auc, verdict(auc, se), score[n_tr:], feats, se)


def _design(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised rows with a leading 1 (the intercept), float32: a chunk's Gram matrix is
    summed in float32 at BLAS speed and the chunks' sums in float64."""
    z = (np.asarray(x, dtype=np.float32) - mean) / scale
    return np.hstack([np.ones((len(z), 1), dtype=np.float32), z])


def _shifted(
    train: np.ndarray, test: np.ndarray, mean: np.ndarray, scale: np.ndarray, top: int, block: int
) -> list[tuple[int, float]]:
    """The ``top`` features by standardised mean difference (test - train) / pooled std."""
    means = []
    for m in (train, test):
        s = np.zeros(train.shape[1])
        for a in range(0, len(m), block):
            s += ((np.asarray(m[a : a + block], dtype=np.float32) - mean) / scale).sum(axis=0)
        means.append(s / max(len(m), 1))
    diff = means[1] - means[0]
    order = np.argsort(-np.abs(diff))[:top]
    return [(int(i), float(diff[i])) for i in order]


__all__ = ["Shift", "adversarial", "auc_se", "verdict"]
