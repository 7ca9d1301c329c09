"""Calibration: fitted out-of-fold, it repairs a miscalibrated (overconfident) predictor."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from sslstack.classify.metrics import ece as classify_ece
from sslstack.ensemble import CALIBRATORS, calibrate_oof, calibration_scores
from sslstack.ensemble.calibrate import apply_calibration, ece
from sslstack.ensemble.encoding import Encoding
from sslstack.errors import ConfigError

ENCS = {
    "binary": Encoding("binary", ("real", "fake"), "fake"),
    "multiclass": Encoding("multiclass", ("a", "b", "c")),
    "multilabel": Encoding("multilabel", ("x", "y", "z")),
}


def _overconfident(enc: Encoding, n: int = 1500, seed: int = 0):
    """True probabilities from logits; reported probabilities from logits x 4."""
    rng = np.random.default_rng(seed)
    C = len(enc.labels)
    if enc.task == "multilabel":
        z = rng.normal(scale=1.0, size=(n, C))
        y = (rng.random((n, C)) < 1 / (1 + np.exp(-z))).astype(int)
        return y, 1 / (1 + np.exp(-4 * z))
    z = rng.normal(scale=1.0, size=(n, C))
    true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(C, p=p) for p in true])
    q = np.exp(4 * z)
    return y, q / q.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("task", list(ENCS))
@pytest.mark.parametrize("method", list(CALIBRATORS))
def test_calibration_improves_ece_out_of_fold(method: str, task: str) -> None:
    enc = ENCS[task]
    y, p = _overconfident(enc)
    folds = np.arange(len(y)) % 5
    out, info = calibrate_oof(p, y, folds, enc, method)
    assert info["after"]["ece"] < 0.5 * info["before"]["ece"]
    assert info["after"]["log_loss"] < info["before"]["log_loss"]
    assert info["after"]["brier"] < info["before"]["brier"]
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    if enc.single_label:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    # the calibrator kept for test data is JSON-ready and applies to new rows
    import json

    saved = json.loads(json.dumps(info))
    new = apply_calibration(p[:50], saved, enc)
    assert new.shape == (50, len(enc.labels))


def test_scores_match_references() -> None:
    enc = ENCS["binary"]
    y, p = _overconfident(enc, n=400)
    s = calibration_scores(y, p, enc)
    assert s["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-6)
    assert s["brier"] == pytest.approx(brier_score_loss(y, p[:, 1]), rel=1e-9)
    assert s["ece"] == pytest.approx(classify_ece(y, p, "binary", 1), rel=1e-9)
    mc = ENCS["multiclass"]
    y, p = _overconfident(mc, n=400)
    assert ece(y, p, mc) == pytest.approx(classify_ece(y, p, "multiclass", 1), rel=1e-9)


def test_temperature_recovers_the_scale() -> None:
    enc = ENCS["multiclass"]
    y, p = _overconfident(enc, n=4000, seed=3)
    _, info = calibrate_oof(p, y, np.arange(len(y)) % 5, enc, "temperature")
    assert info["params"]["T"][0] == pytest.approx(4.0, rel=0.15)


def test_unknown_calibrator() -> None:
    enc = ENCS["binary"]
    with pytest.raises(ConfigError, match="temperature, platt, isotonic"):
        calibrate_oof(
            np.full((4, 2), 0.5), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), enc, "beta"
        )
