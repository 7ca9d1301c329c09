"""Stack methods: hand-checked greedy selection, mean/rank values, the logreg leakage test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from sslstack.ensemble import METHODS, greedy_weights
from sslstack.ensemble.encoding import Encoding, scorer
from sslstack.ensemble.methods import _apply_meta, _fit_meta
from sslstack.errors import ConfigError

BIN = Encoding("binary", ("neg", "pos"), "pos")


def _binary(pos: list[float]) -> np.ndarray:
    p = np.asarray(pos, dtype=float)
    return np.column_stack([1 - p, p])


# y = [neg, pos]; positive-class probabilities of three runs
HAND = np.stack([_binary([0.2, 0.6]), _binary([0.4, 0.9]), _binary([0.9, 0.1])])
Y_HAND = np.array([0, 1])


def test_greedy_hand_checked_brier_cut_at_best_iteration() -> None:
    # Brier (lower is better) of the averaged positive probability, by hand:
    # it1: A .10, B .085, C .81 -> B (.085)
    # it2: B+A -> [.3,.75] .07625; B+B .085 -> A
    # it3: 2B+A -> [1/3,.8] .075556; 2A+B -> [.2667,.7] .080556 -> B
    # it4: 2B+2A -> [.3,.75] .07625; 3B+A -> [.35,.825] .076563 -> A (worse than it3)
    # it5: 3B+2A -> [.32,.78] .0754 -> B (new best)
    sc = scorer("brier", BIN)
    w4, h4 = greedy_weights(HAND, Y_HAND, sc, size=4)
    np.testing.assert_allclose(h4, [0.085, 0.07625, 0.0755556, 0.07625], atol=1e-6)
    np.testing.assert_allclose(w4, [1 / 3, 2 / 3, 0.0])  # cut at it3
    w5, h5 = greedy_weights(HAND, Y_HAND, sc, size=5)
    np.testing.assert_allclose(h5[-1], 0.0754, atol=1e-9)
    np.testing.assert_allclose(w5, [0.4, 0.6, 0.0])


def test_greedy_respects_greater_is_better_and_ties() -> None:
    # ROC-AUC: A and B are perfect (1.0), C is inverted (0.0). Maximizing picks A first (the
    # lower index among ties); nothing ever beats 1.0, so the ensemble is cut at iteration 1.
    w, hist = greedy_weights(HAND, Y_HAND, scorer("roc_auc", BIN), size=6)
    np.testing.assert_allclose(w, [1.0, 0.0, 0.0])
    assert hist[0] == 1.0


def test_mean_and_rank_values() -> None:
    rng = np.random.default_rng(0)
    enc = Encoding("multiclass", ("a", "b", "c"))
    P = rng.dirichlet(np.ones(3), size=(2, 20))
    sc = scorer("accuracy", enc)
    folds = np.arange(20) % 4
    y = rng.integers(0, 3, 20)
    mean, _ = METHODS["mean"].fit(P, y, folds, sc)
    np.testing.assert_allclose(mean, P.mean(axis=0))
    rank, _ = METHODS["rank"].fit(P, y, folds, sc)
    ref = np.mean([[rankdata(p[:, c]) / 20 for c in range(3)] for p in P], axis=0).T
    np.testing.assert_allclose(rank, ref / ref.sum(axis=1, keepdims=True))
    # binary rank: the positive column's ranks, negative = 1 - positive
    rb, _ = METHODS["rank"].fit(HAND[:2], Y_HAND, np.array([0, 1]), scorer("roc_auc", BIN))
    np.testing.assert_allclose(rb[:, 1], [0.5, 1.0])
    np.testing.assert_allclose(rb.sum(axis=1), 1.0)


TASKS = {
    "binary": Encoding("binary", ("neg", "pos"), "pos"),
    "multiclass": Encoding("multiclass", ("a", "b", "c", "d")),
    "multilabel": Encoding("multilabel", ("x", "y", "z")),
}


def _synthetic(enc: Encoding, n: int = 160, R: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    C = len(enc.labels)
    if enc.task == "multilabel":
        y = (rng.random((n, C)) < 0.4).astype(int)
        y[:2] = [[1] * C, [0] * C]
        z = 1.5 * (2 * y - 1)[None] + rng.normal(size=(R, n, C))
        P = 1 / (1 + np.exp(-z))
    else:
        y = rng.integers(0, C, n)
        z = 1.5 * np.eye(C)[y][None] + rng.normal(size=(R, n, C))
        P = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    return P, y, np.arange(n) % 5


def test_unknown_method_lists_names() -> None:
    with pytest.raises(ConfigError, match="best_single, mean, rank, greedy, greedy_nested, logreg"):
        METHODS["median"]


def test_logreg_leakage_noise_gives_no_out_of_fold_gain() -> None:
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    folds = rng.permutation(np.arange(n) % 5)
    good = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + 1.5 * rng.normal(size=n))))
    noise = rng.random((30, n))
    sc = scorer("roc_auc", BIN)
    fit = METHODS["logreg"].fit

    alone, _ = fit(_binary(good)[None], y, folds, sc)
    with_noise, _ = fit(np.stack([_binary(good)] + [_binary(p) for p in noise]), y, folds, sc)
    assert sc(y, with_noise) <= sc(y, alone) + 0.005

    # pure noise: the honest out-of-fold score shows no gain over chance (cross-validating noise
    # tends to land below 0.5), while the same meta-learner scored on the rows it was fitted on
    # looks clearly better than chance (so the test has teeth)
    P_noise = np.stack([_binary(p) for p in noise])
    honest, _ = fit(P_noise, y, folds, sc)
    leaky = _apply_meta(P_noise, _fit_meta(P_noise, y, BIN, 1.0), BIN)
    assert roc_auc_score(y, honest[:, 1]) < 0.55
    assert roc_auc_score(y, leaky[:, 1]) > 0.62


def test_logreg_multilabel_is_fitted_per_label() -> None:
    enc = TASKS["multilabel"]
    P, y, folds = _synthetic(enc)
    _, params = METHODS["logreg"].fit(P, y, folds, scorer("map", enc))
    assert len(params["per_label"]) == 3
    assert all(len(m["coef"][0]) == 3 for m in params["per_label"])  # one weight per base run


@pytest.mark.parametrize("name", ["greedy", "greedy_nested"])
def test_greedy_scores_each_fold_with_weights_from_the_other_folds(name: str) -> None:
    """greedy's out-of-fold rows are honest (its former greedy_nested variant, now the one
    greedy): each fold's rows use weights chosen without them; the saved weights use all."""
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    folds = np.arange(n) % 4
    good = np.clip(0.5 + 0.3 * (2 * y - 1) + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    noise = [rng.uniform(0.01, 0.99, n) for _ in range(6)]
    P = np.stack([np.stack([1 - p, p], axis=1) for p in [good, *noise]])
    sc = scorer("accuracy", BIN)
    oof, params = METHODS[name].fit(P, y, folds, sc, greedy_size=10)
    for f in range(4):  # reference: the weights chosen without fold f, applied to fold f
        w, _ = greedy_weights(P[:, folds != f], y[folds != f], sc, 10)
        ref = np.tensordot(w, P[:, folds == f], axes=1)
        np.testing.assert_allclose(oof[folds == f], ref / ref.sum(axis=1, keepdims=True))
    full, _ = greedy_weights(P, y, sc, 10)
    np.testing.assert_allclose(params["weights"], full)


def test_best_single_is_chosen_on_the_other_folds() -> None:
    """Picking the best of many runs on the rows it is scored on flatters it: among 200 noise
    runs the in-sample best is well above chance, the nested choice is not."""
    rng = np.random.default_rng(5)
    n, runs = 100, 200
    y = rng.integers(0, 2, n)
    folds = np.arange(n) % 5
    P = np.stack([np.stack([1 - p, p], axis=1) for p in rng.uniform(0.01, 0.99, (runs, n))])
    sc = scorer("accuracy", BIN)
    m = METHODS["best_single"]
    oof, params = m.fit(P, y, folds, sc)
    for f in range(5):  # reference: the run best without fold f predicts fold f
        j = int(np.argmax([sc(y[folds != f], p[folds != f]) for p in P]))
        np.testing.assert_allclose(oof[folds == f], P[j, folds == f])
    best = int(np.argmax([sc(y, p) for p in P]))
    assert params["weights"] == [1.0 if j == best else 0.0 for j in range(runs)]
    in_sample = sc(y, m.apply(P, params, BIN))
    assert in_sample > 0.6 and sc(y, oof) < 0.56
