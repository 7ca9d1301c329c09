"""Every stack method and every calibrator of the registries, over every task: shapes, valid
probabilities, honest out-of-fold rows (a fold's rows never depend on its own labels),
monotone calibration that keeps a calibrated input calibrated. A method or calibrator added to
its registry runs here without editing this file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sslstack.classify.metrics import get_metric
from sslstack.ensemble.calibrate import CALIBRATORS, calibrate_oof
from sslstack.ensemble.encoding import Encoding, scorer
from sslstack.ensemble.methods import METHODS

ENCODINGS = {
    "binary": Encoding("binary", ("neg", "pos"), "pos"),
    "multiclass": Encoding("multiclass", ("a", "b", "c", "d")),
    "multilabel": Encoding("multilabel", ("x", "y", "z")),
}
K = 5


def _runs(enc: Encoding, n: int = 150, runs: int = 3, seed: int = 0):
    """Three informative runs' probabilities (runs, n, classes), labels, folds."""
    rng = np.random.default_rng(seed)
    c = len(enc.labels)
    if enc.task == "multilabel":
        y = (rng.random((n, c)) < 0.4).astype(int)
        y[:2] = [[1] * c, [0] * c]
        z = 1.5 * (2 * y - 1)[None] + rng.normal(size=(runs, n, c))
        return 1 / (1 + np.exp(-z)), y, np.arange(n) % K
    y = rng.integers(0, c, n)
    z = 1.5 * np.eye(c)[y][None] + rng.normal(size=(runs, n, c))
    return np.exp(z) / np.exp(z).sum(axis=2, keepdims=True), y, np.arange(n) % K


def _relabel(y: np.ndarray, rows: np.ndarray, enc: Encoding) -> np.ndarray:
    """Other labels on ``rows`` (every single label moved on, every multi-label bit flipped)."""
    out = y.copy()
    out[rows] = 1 - y[rows] if enc.task == "multilabel" else (y[rows] + 1) % len(enc.labels)
    return out


def _valid(p: np.ndarray, enc: Encoding, n: int) -> None:
    assert p.shape == (n, len(enc.labels)) and np.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    if enc.task != "multilabel":
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("task", list(ENCODINGS))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_stack_method_gives_valid_honest_out_of_fold_rows(name: str, task: str) -> None:
    enc = ENCODINGS[task]
    P, y, folds = _runs(enc)
    method, sc = METHODS[name], scorer(None, enc)
    oof, params = method.fit(P, y, folds, sc)
    _valid(oof, enc, len(y))
    new = method.apply(P[:, :7], json.loads(json.dumps(params)), enc)  # params are plain JSON
    _valid(new, enc, 7)
    if name == "best_single":  # one run's rows in each fold
        for f in range(K):
            assert any(np.allclose(oof[folds == f], p[folds == f]) for p in P)
    else:  # three informative runs stacked beat the average single run
        assert sc.better(sc(y, oof), float(np.mean([sc(y, p) for p in P])))
    if name == "mean":
        np.testing.assert_allclose(new, oof[:7])
    rows = folds == 0  # a fold's rows are fitted on the other folds only
    again, _ = method.fit(P, _relabel(y, rows, enc), folds, sc)
    np.testing.assert_allclose(again[rows], oof[rows], atol=1e-9)


def _calibrated(enc: Encoding, n: int = 1200, seed: int = 1, scale: float = 1.0):
    """Probabilities and labels drawn from them (calibrated by construction); ``scale`` > 1
    makes the probabilities overconfident."""
    rng = np.random.default_rng(seed)
    z = 1.5 * rng.normal(size=(n, len(enc.labels)))
    if enc.task == "multilabel":
        y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(int)
        return 1 / (1 + np.exp(-scale * z)), y, np.arange(n) % K
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)  # one draw per row from p
    q = np.exp(scale * z) / np.exp(scale * z).sum(axis=1, keepdims=True)
    return q, y, np.arange(n) % K


@pytest.mark.parametrize("task", list(ENCODINGS))
@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_every_calibrator_is_monotone_honest_and_keeps_a_calibrated_input(
    name: str, task: str
) -> None:
    enc = ENCODINGS[task]
    loss = get_metric("log_loss", task)
    p, y, folds = _calibrated(enc)
    out, info = calibrate_oof(p, y, folds, enc, name)
    _valid(out, enc, len(y))
    assert info["method"] == name and set(info["before"]) == set(info["after"])
    # calibrated by construction: calibration keeps the log-loss, within the noise of a fit on
    # 960 rows (isotonic's steps measured +3 to +4 %; temperature and platt +0.3 %)
    assert loss(y, out, task, enc.positive_index) <= 1.05 * loss(y, p, task, enc.positive_index)
    # monotone: a higher raw probability never gets a lower calibrated one (one-vs-rest columns)
    if task != "multiclass":
        cols = [enc.positive_index] if task == "binary" else range(p.shape[1])
        applied = CALIBRATORS[name].apply(p, info["params"], enc)
        for c in cols:
            order = np.argsort(p[:, c], kind="stable")
            assert (np.diff(applied[order, c]) >= -1e-9).all(), c
    rows = folds == 0  # a fold's rows are calibrated by a fit on the other folds only
    again, _ = calibrate_oof(p, _relabel(y, rows, enc), folds, enc, name)
    np.testing.assert_allclose(again[rows], out[rows], atol=1e-9)


@pytest.mark.parametrize("task", list(ENCODINGS))
@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_every_calibrator_improves_an_overconfident_input(name: str, task: str) -> None:
    enc = ENCODINGS[task]
    loss = get_metric("log_loss", task)
    p, y, folds = _calibrated(enc, scale=3.0)
    out, _ = calibrate_oof(p, y, folds, enc, name)
    assert loss(y, out, task, enc.positive_index) < loss(y, p, task, enc.positive_index) - 0.05
